// Drives libptdit_plugins.so the way TensorRT does, without TensorRT: dlopen, setLoggerFinder,
// getCreators, then create / query / serialise / re-create / clone each plugin through the
// IPluginV3 interfaces, and call enqueue only with sizes the plugin must reject before any
// CUDA work. Prints what it saw as JSON; tests/plugins/test_plugin_library.py checks it
// against ops.json. Usage: plugin_harness <path to libptdit_plugins.so>
#include <NvInferRuntime.h>

#include <cstdio>
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
    }
    delete plugin;
    return os.str() + "}";
}

} // namespace

int main(int argc, char** argv)
{
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
