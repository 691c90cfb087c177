// Drives libptdit_plugins.so the way TensorRT does, without TensorRT: dlopen, setLoggerFinder,
// getCreators, then create / query / serialise / re-create / clone each plugin through the
// IPluginV3 interfaces, and call enqueue only with sizes the plugin must reject before any
// CUDA work. Prints what it saw as JSON; tests/plugins/test_plugin_library.py checks it
// against ops.json. Usage: plugin_harness <path to libptdit_plugins.so>
//
// It also stands in for libnvinfer's registry: it exports getPluginRegistry() and
// getInferLibVersion() (the executable is linked with ENABLE_EXPORTS), so a plain dlopen of the
// library finds them as it would find a loaded TensorRT's.
//   plugin_harness --registry <library> <copy of the library> [fake TensorRT version]
// reports what a dlopen registers, what a second copy adds, and whether a loadLibrary
// afterwards (getCreators, then registerCreator of each, failing on any duplicate) succeeds.
#include <NvInferRuntime.h>

#include <NvInferVersion.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <dlfcn.h>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

class Logger : public ILogger
{
public:
    void log(Severity severity, char const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            messages.emplace_back(msg);
        }
    }
    std::vector<std::string> messages;
};

class Finder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &logger;
    }
    Logger logger;
};

// IDimensionExpr / IExprBuilder stand-ins: a value >= 0 is a constant, -1 a symbolic size.
class Expr : public IDimensionExpr
{
public:
    explicit Expr(int64_t value)
        : mValue(value)
    {
        mImpl = &mValue;
    }
    ~Expr() noexcept override = default;

private:
    struct Impl : apiv::VDimensionExpr
    {
        explicit Impl(int64_t v)
            : v(v)
        {
        }
        bool isConstant() const override
        {
            return v >= 0;
        }
        int64_t getConstantValue() const override
        {
            return v;
        }
        bool isSizeTensor() const override
        {
            return false;
        }
        int64_t v;
    } mValue;
};

class Builder : public IExprBuilder
{
public:
    Builder()
        : mValue(this)
    {
        mImpl = &mValue;
    }
    ~Builder() noexcept override = default;
    Expr const* make(int64_t v)
    {
        return &exprs.emplace_back(v);
    }
    std::deque<Expr> exprs;

private:
    struct Impl : apiv::VExprBuilder
    {
        explicit Impl(Builder* b)
            : b(b)
        {
        }
        IDimensionExpr const* constant(int64_t value) override
        {
            return b->make(value);
        }
        IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& x, IDimensionExpr const& y) override
        {
            if (!x.isConstant() || !y.isConstant())
            {
                return b->make(-1);
            }
            int64_t const u = x.getConstantValue(), w = y.getConstantValue();
            switch (op)
            {
            case DimensionOperation::kSUM: return b->make(u + w);
            case DimensionOperation::kPROD: return b->make(u * w);
            case DimensionOperation::kFLOOR_DIV: return b->make(u / w);
            default: return b->make(-1);
            }
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
        {
            return nullptr;
        }
        Builder* b;
    } mValue;
};

std::string quote(std::string const& s)
{
    std::string out = "\"";
    for (char c : s)
    {
        if (c == '"' || c == '\\')
        {
            out += '\\';
        }
        out += c;
    }
    return out + "\"";
}

char const* typeName(DataType t)
{
    switch (t)
    {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    case DataType::kBF16: return "bfloat16";
    case DataType::kINT32: return "int32";
    case DataType::kINT8: return "int8";
    default: return "other";
    }
}

std::string fieldsJson(PluginFieldCollection const* fc)
{
    std::ostringstream os;
    os << "[";
    for (int32_t i = 0; fc && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        os << (i ? ", " : "") << "{\"name\": " << quote(f.name) << ", \"type\": " << static_cast<int>(f.type)
           << ", \"length\": " << f.length << ", \"values\": [";
        for (int32_t j = 0; f.data && j < f.length; ++j)
        {
            os << (j ? ", " : "");
            if (f.type == PluginFieldType::kINT32)
            {
                os << static_cast<int32_t const*>(f.data)[j];
            }
            else if (f.type == PluginFieldType::kFLOAT32)
            {
                os << static_cast<float const*>(f.data)[j];
            }
        }
        os << "]}";
    }
    os << "]";
    return os.str();
}

Dims dims(std::vector<int64_t> const& v)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i)
    {
        d.d[i] = v[i];
    }
    return d;
}

DynamicPluginTensorDesc dyn(std::vector<int64_t> const& shape, DataType type, TensorFormat format = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc t{};
    t.desc.dims = dims(shape);
    t.desc.type = type;
    t.desc.format = format;
    t.desc.scale = -1.f;
    t.min = t.opt = t.max = t.desc.dims;
    return t;
}

IPluginCreatorV3One* findCreator(IPluginCreatorInterface* const* creators, int32_t n, char const* name)
{
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        if (std::strcmp(c->getPluginName(), name) == 0)
        {
            return c;
        }
    }
    return nullptr;
}

struct Case
{
    char const* op;
    std::vector<PluginField> fields;
    std::vector<std::vector<int64_t>> inputShapes; // valid shapes
    std::vector<DataType> inputTypes;              // a valid combination
    std::vector<std::vector<int64_t>> badShapes;   // shapes configure / enqueue must reject
};

// Everything TensorRT would do at build time and before enqueue, for one plugin.
std::string runCase(IPluginCreatorV3One* creator, Case const& c, Finder& finder)
{
    std::ostringstream os;
    PluginFieldCollection fc{static_cast<int32_t>(c.fields.size()), c.fields.data()};
    IPluginV3* plugin = creator->createPlugin("layer", &fc, TensorRTPhase::kBUILD);
    os << "{\"created\": " << (plugin ? "true" : "false");
    if (!plugin)
    {
        return os.str() + "}";
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    os << ", \"interfaces\": [" << quote(core->getInterfaceInfo().kind) << ", " << quote(build->getInterfaceInfo().kind)
       << ", " << quote(runtime->getInterfaceInfo().kind) << "]";
    os << ", \"name\": " << quote(core->getPluginName()) << ", \"version\": " << quote(core->getPluginVersion())
       << ", \"namespace\": " << quote(core->getPluginNamespace());
    os << ", \"nb_outputs\": " << build->getNbOutputs();

    // serialisation round trip, through a clone and a context copy too
    std::string const serialized = fieldsJson(runtime->getFieldsToSerialize());
    os << ", \"serialized\": " << serialized;
    IPluginV3* again = creator->createPlugin("layer", runtime->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    IPluginV3* cloned = plugin->clone();
    IPluginV3* attached = runtime->attachToContext(nullptr);
    auto reserialize = [](IPluginV3* p) {
        auto* r = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        return fieldsJson(r->getFieldsToSerialize());
    };
    os << ", \"roundtrip_equal\": " << (again && reserialize(again) == serialized ? "true" : "false");
    os << ", \"clone_equal\": " << (cloned && reserialize(cloned) == serialized ? "true" : "false");
    os << ", \"attach_equal\": " << (attached && reserialize(attached) == serialized ? "true" : "false");
    delete again;
    delete cloned;
    delete attached;

    int32_t const nIn = static_cast<int32_t>(c.inputShapes.size());
    // output dtype
    DataType outType{};
    build->getOutputDataTypes(&outType, 1, c.inputTypes.data(), nIn);
    os << ", \"output_type\": " << quote(typeName(outType));

    // output shape with a symbolic batch dimension
    Builder eb;
    std::vector<DimsExprs> in(static_cast<size_t>(nIn));
    for (int32_t i = 0; i < nIn; ++i)
    {
        in[i].nbDims = static_cast<int32_t>(c.inputShapes[i].size());
        for (int32_t j = 0; j < in[i].nbDims; ++j)
        {
            in[i].d[j] = eb.make(j == 0 && in[i].nbDims == 3 ? -1 : c.inputShapes[i][j]);
        }
    }
    DimsExprs out{};
    int32_t const rcShape = build->getOutputShapes(in.data(), nIn, nullptr, 0, &out, 1, eb);
    os << ", \"output_shape_rc\": " << rcShape << ", \"output_shape\": [";
    for (int32_t j = 0; rcShape == 0 && j < out.nbDims; ++j)
    {
        os << (j ? ", " : "") << (out.d[j] == in[0].d[j] ? std::string("\"q0\"") : std::to_string(out.d[j]->getConstantValue()));
    }
    os << "]";

    // accepted dtypes per position, earlier positions holding the valid combination
    DataType const all[] = {DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT32, DataType::kINT8};
    for (DataType first : {DataType::kHALF, DataType::kFLOAT})
    {
        std::vector<DynamicPluginTensorDesc> io;
        for (int32_t i = 0; i < nIn; ++i)
        {
            io.push_back(dyn(c.inputShapes[i], i == 0 ? first : c.inputTypes[i] == DataType::kINT32 ? DataType::kINT32 : first));
        }
        io.push_back(dyn(c.inputShapes[0], first));
        os << ", \"supported_after_" << typeName(first) << "\": [";
        for (int32_t pos = 0; pos <= nIn; ++pos)
        {
            os << (pos ? ", " : "") << "[";
            bool any = false;
            for (DataType t : all)
            {
                DynamicPluginTensorDesc saved = io[pos];
                io[pos].desc.type = t;
                if (build->supportsFormatCombination(pos, io.data(), nIn, 1))
                {
                    os << (any ? ", " : "") << quote(typeName(t));
                    any = true;
                }
                io[pos] = saved;
            }
            os << "]";
        }
        os << "]";
    }
    {
        std::vector<DynamicPluginTensorDesc> io;
        for (int32_t i = 0; i < nIn; ++i)
        {
            io.push_back(dyn(c.inputShapes[i], c.inputTypes[i]));
        }
        io.push_back(dyn(c.inputShapes[0], c.inputTypes[0]));
        io[0].desc.format = TensorFormat::kCHW32;
        os << ", \"accepts_chw32\": " << (build->supportsFormatCombination(0, io.data(), nIn, 1) ? "true" : "false");

        // configure: valid shapes, then each bad shape in place of input 0 (and its twins)
        io[0].desc.format = TensorFormat::kLINEAR;
        os << ", \"configure_valid_rc\": " << build->configurePlugin(io.data(), nIn, io.data() + nIn, 1);
        std::vector<DynamicPluginTensorDesc> sym = io;
        sym[0].desc.dims.d[0] = -1;
        os << ", \"configure_symbolic_rc\": " << build->configurePlugin(sym.data(), nIn, sym.data() + nIn, 1);
        os << ", \"rejected\": [";
        for (size_t b = 0; b < c.badShapes.size(); ++b)
        {
            std::vector<DynamicPluginTensorDesc> bad = io;
            for (int32_t i = 0; i < nIn; ++i)
            {
                if (c.inputTypes[i] != DataType::kINT32)
                {
                    bad[i] = dyn(c.badShapes[b], c.inputTypes[i]);
                }
            }
            finder.logger.messages.clear();
            int32_t const rcConfigure = build->configurePlugin(bad.data(), nIn, bad.data() + nIn, 1);
            std::string const configureMessage = finder.logger.messages.empty() ? "" : finder.logger.messages.back();
            // enqueue must refuse these sizes before touching CUDA (null pointers are never read)
            std::vector<PluginTensorDesc> descs;
            for (auto const& d : bad)
            {
                descs.push_back(d.desc);
            }
            std::vector<void const*> inputs(static_cast<size_t>(nIn), nullptr);
            void* outputs[1] = {nullptr};
            finder.logger.messages.clear();
            int32_t const rcEnqueue
                = runtime->enqueue(descs.data(), descs.data() + nIn, inputs.data(), outputs, nullptr, nullptr);
            std::string const enqueueMessage = finder.logger.messages.empty() ? "" : finder.logger.messages.back();
            os << (b ? ", " : "") << "{\"configure_rc\": " << rcConfigure << ", \"configure_message\": "
               << quote(configureMessage) << ", \"enqueue_rc\": " << rcEnqueue
               << ", \"enqueue_message\": " << quote(enqueueMessage) << "}";
        }
        os << "]";

        // a profile whose largest batch overflows the kernels' 32-bit row space must fail the build;
        // a modest one passes (desc dims symbolic, as TensorRT passes them for dynamic shapes)
        for (int64_t maxRows : {int64_t{600000000}, int64_t{1024}})
        {
            std::vector<DynamicPluginTensorDesc> prof = io;
            for (int32_t i = 0; i < nIn; ++i)
            {
                if (prof[i].desc.dims.nbDims == 3)
                {
                    prof[i].desc.dims.d[0] = -1;
                    prof[i].min.d[0] = 1;
                    prof[i].max.d[0] = maxRows;
                }
            }
            finder.logger.messages.clear();
            int32_t const rc = build->configurePlugin(prof.data(), nIn, prof.data() + nIn, 1);
            std::string const message = finder.logger.messages.empty() ? "" : finder.logger.messages.back();
            os << ", \"profile_max_" << maxRows << "\": {\"rc\": " << rc << ", \"message\": " << quote(message) << "}";
        }

        // an empty batch (0 windows) is a no-op, even with null tensors
        std::vector<PluginTensorDesc> empty;
        for (auto const& d : io)
        {
            empty.push_back(d.desc);
            if (empty.back().dims.nbDims == 3)
            {
                empty.back().dims.d[0] = 0;
            }
        }
        std::vector<void const*> none(static_cast<size_t>(nIn), nullptr);
        void* noOut[1] = {nullptr};
        finder.logger.messages.clear();
        int32_t const rcEmpty = runtime->enqueue(empty.data(), empty.data() + nIn, none.data(), noOut, nullptr, nullptr);
        os << ", \"empty_enqueue_rc\": " << rcEmpty << ", \"empty_enqueue_messages\": " << finder.logger.messages.size();
    }
    delete plugin;
    return os.str() + "}";
}

// TensorRT's global plugin registry as far as plugin libraries see it.
class Registry : public IPluginRegistry
{
public:
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override
    {
        return nullptr;
    }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override
    {
        ++registerCalls;
        auto& c = static_cast<IPluginCreatorV3One&>(creator);
        if (getCreator(c.getPluginName(), c.getPluginVersion(), ns) != nullptr)
        {
            ++duplicates; // TensorRT refuses these (and loadLibrary then fails)
            return false;
        }
        creators.push_back(&creator);
        return true;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override
    {
        *n = static_cast<int32_t>(creators.size());
        return creators.data();
    }
    IPluginCreatorInterface* getCreator(
        AsciiChar const* const name, AsciiChar const* const version, AsciiChar const* const ns) noexcept override
    {
        for (IPluginCreatorInterface* creator : creators)
        {
            auto* c = static_cast<IPluginCreatorV3One*>(creator);
            if (std::strcmp(c->getPluginName(), name) == 0 && std::strcmp(c->getPluginVersion(), version) == 0
                && std::strcmp(c->getPluginNamespace(), ns ? ns : "") == 0)
            {
                return creator;
            }
        }
        return nullptr;
    }
    bool deregisterCreator(IPluginCreatorInterface const& creator) noexcept override
    {
        for (size_t i = 0; i < creators.size(); ++i)
        {
            if (creators[i] == &creator)
            {
                creators.erase(creators.begin() + static_cast<std::ptrdiff_t>(i));
                return true;
            }
        }
        return false;
    }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override
    {
        return 0;
    }
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override
    {
        return getAllCreators(n);
    }

    std::string names() const
    {
        std::string out = "[";
        for (size_t i = 0; i < creators.size(); ++i)
        {
            out += (i ? ", " : "") + quote(static_cast<IPluginCreatorV3One*>(creators[i])->getPluginName());
        }
        return out + "]";
    }

    std::vector<IPluginCreatorInterface*> creators;
    int32_t registerCalls = 0;
    int32_t duplicates = 0;
};

Registry gRegistry;
int32_t gVersion = NV_TENSORRT_VERSION;

// The --registry mode: load-time registration and a later loadLibrary, as TensorRT would see them.
int registryMode(char const* library, char const* copy)
{
    std::ostringstream os;
    void* lib = dlopen(library, RTLD_NOW | RTLD_LOCAL); // what ctypes.CDLL / polygraphy --plugins do
    if (!lib)
    {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 1;
    }
    os << "{\"after_dlopen\": " << gRegistry.names() << ", \"calls_after_dlopen\": " << gRegistry.registerCalls;
    void* second = dlopen(copy, RTLD_NOW | RTLD_LOCAL); // another copy of the library (another path)
    os << ", \"copy_loaded\": " << (second ? "true" : "false") << ", \"after_copy\": " << gRegistry.names()
       << ", \"calls_after_copy\": " << gRegistry.registerCalls;
    // IPluginRegistry::loadLibrary(library): setLoggerFinder, getCreators, register each
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators ? getCreators(n) : nullptr;
    bool loaded = creators != nullptr;
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        loaded = gRegistry.registerCreator(*creators[i], c->getPluginNamespace()) && loaded;
    }
    os << ", \"load_library_ok\": " << (loaded ? "true" : "false") << ", \"after_load_library\": " << gRegistry.names()
       << ", \"duplicates\": " << gRegistry.duplicates << "}";
    std::printf("%s\n", os.str().c_str());
    return 0;
}

} // namespace

// libnvinfer's registration entry points, as the library's load-time lookup finds them.
extern "C" __attribute__((visibility("default"))) IPluginRegistry* getPluginRegistry() noexcept
{
    return &gRegistry;
}
extern "C" __attribute__((visibility("default"))) int32_t getInferLibVersion() noexcept
{
    return gVersion;
}

int main(int argc, char** argv)
{
    if ((argc == 4 || argc == 5) && std::strcmp(argv[1], "--registry") == 0)
    {
        gVersion = argc == 5 ? std::atoi(argv[4]) : gVersion;
        return registryMode(argv[2], argv[3]);
    }
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: %s libptdit_plugins.so\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib)
    {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    if (!getCreators || !setLoggerFinder)
    {
        std::fprintf(stderr, "getCreators / setLoggerFinder not exported\n");
        return 1;
    }
    Finder finder;
    setLoggerFinder(&finder);
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);

    std::ostringstream os;
    os << "{\"creators\": [";
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        os << (i ? ", " : "") << "{\"interface\": " << quote(creators[i]->getInterfaceInfo().kind)
           << ", \"name\": " << quote(c->getPluginName()) << ", \"version\": " << quote(c->getPluginVersion())
           << ", \"namespace\": " << quote(c->getPluginNamespace()) << ", \"fields\": " << fieldsJson(c->getFieldNames())
           << "}";
    }
    os << "]";

    // Fields as the ONNX parser passes attributes: INT/INTS -> int32, FLOAT -> float32.
    int32_t window[3] = {1, 8, 8};
    int32_t groups[3] = {1, 2, 2};
    int32_t badGroups[3] = {1, 3, 3};
    int32_t heads = 16;
    float scale = 0.125f;
    float windowAsFloat[3] = {1.f, 8.f, 8.f};
    DataType const h = DataType::kHALF;
    std::vector<Case> cases = {
        {"PTDiTProxyPool",
            {PluginField("window", window, PluginFieldType::kINT32, 3),
                PluginField("groups", groups, PluginFieldType::kINT32, 3)},
            {{2, 64, 1152}}, {h}, {{2, 63, 1152}}},
        {"PTDiTWindowAttention",
            {PluginField("num_heads", &heads, PluginFieldType::kINT32, 1),
                PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1)},
            {{2, 64, 1152}, {2, 64, 1152}, {2, 64, 1152}}, {h, h, h}, {{2, 64, 1160}, {2, 2048, 1152}}},
        {"PTDiTShiftedWindowAttention",
            {PluginField("num_heads", &heads, PluginFieldType::kINT32, 1),
                PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1),
                PluginField("window", window, PluginFieldType::kINT32, 3)},
            {{2, 64, 1152}, {2, 64, 1152}, {2, 64, 1152}, {3}}, {h, h, h, DataType::kINT32},
            {{2, 64, 1160}, {2, 128, 1152}}},
    };
    os << ", \"cases\": {";
    for (size_t i = 0; i < cases.size(); ++i)
    {
        IPluginCreatorV3One* creator = findCreator(creators, n, cases[i].op);
        os << (i ? ", " : "") << quote(cases[i].op) << ": " << (creator ? runCase(creator, cases[i], finder) : "null");
    }
    os << "}";

    // creation must fail, with a message, on fields that do not describe a valid op
    struct Bad
    {
        char const* label;
        char const* op;
        std::vector<PluginField> fields;
    };
    std::vector<Bad> bad = {
        {"groups_not_dividing", "PTDiTProxyPool",
            {PluginField("window", window, PluginFieldType::kINT32, 3),
                PluginField("groups", badGroups, PluginFieldType::kINT32, 3)}},
        {"missing_groups", "PTDiTProxyPool", {PluginField("window", window, PluginFieldType::kINT32, 3)}},
        {"window_as_float", "PTDiTShiftedWindowAttention",
            {PluginField("num_heads", &heads, PluginFieldType::kINT32, 1),
                PluginField("window", windowAsFloat, PluginFieldType::kFLOAT32, 3)}},
        {"window_too_short", "PTDiTShiftedWindowAttention",
            {PluginField("num_heads", &heads, PluginFieldType::kINT32, 1),
                PluginField("window", window, PluginFieldType::kINT32, 2)}},
    };
    os << ", \"bad_fields\": {";
    for (size_t i = 0; i < bad.size(); ++i)
    {
        IPluginCreatorV3One* creator = findCreator(creators, n, bad[i].op);
        PluginFieldCollection fc{static_cast<int32_t>(bad[i].fields.size()), bad[i].fields.data()};
        finder.logger.messages.clear();
        IPluginV3* p = creator ? creator->createPlugin("bad", &fc, TensorRTPhase::kBUILD) : nullptr;
        std::string const message = finder.logger.messages.empty() ? "" : finder.logger.messages.back();
        os << (i ? ", " : "") << quote(bad[i].label) << ": {\"created\": " << (p ? "true" : "false")
           << ", \"message\": " << quote(message) << "}";
        delete p;
    }
    os << "}}";
    std::printf("%s\n", os.str().c_str());
    return 0;
}
