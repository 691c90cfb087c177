// Shared plugin helpers and the library's TensorRT entry points (getCreators, setLoggerFinder).
#include "plugin_common.h"

#include "proxy_pool/proxy_pool_plugin.h"
#include "shifted_window_attention/shifted_window_attention_plugin.h"
#include "window_attention/window_attention_plugin.h"

#include <atomic>
#include <dlfcn.h>
#include <mutex>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace ptdit::trt
{
namespace
{
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

DataType toTrt(ops::DType type) noexcept
{
    switch (type)
    {
    case ops::DType::kFloat32: return DataType::kFLOAT;
    case ops::DType::kFloat16: return DataType::kHALF;
    case ops::DType::kBFloat16: return DataType::kBF16;
    case ops::DType::kInt32: return DataType::kINT32;
    }
    return DataType::kFLOAT;
}

char const* typeName(nvinfer1::PluginFieldType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginFieldType::kINT32: return "int32";
    case nvinfer1::PluginFieldType::kINT64: return "int64";
    case nvinfer1::PluginFieldType::kFLOAT32: return "float32";
    case nvinfer1::PluginFieldType::kFLOAT64: return "float64";
    case nvinfer1::PluginFieldType::kCHAR: return "char";
    default: return "another type";
    }
}
} // namespace

void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept
{
    std::string const line = std::string("[ptdit_plugins] ") + message;
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    nvinfer1::ILogger* logger = finder ? finder->findLogger() : nullptr;
    if (logger)
    {
        logger->log(severity, line.c_str());
    }
    else if (severity <= nvinfer1::ILogger::Severity::kWARNING)
    {
        std::fprintf(stderr, "%s\n", line.c_str());
    }
}

bool allowedType(ops::InputSpec const& input, DataType type) noexcept
{
    for (int32_t i = 0; i < input.numDtypes; ++i)
    {
        if (toTrt(input.dtypes[i]) == type)
        {
            return true;
        }
    }
    return false;
}

int32_t kernelDtype(DataType type) noexcept
{
    switch (type)
    {
    case DataType::kFLOAT: return PTDIT_FLOAT32;
    case DataType::kHALF: return PTDIT_FLOAT16;
    case DataType::kBF16: return PTDIT_BFLOAT16;
    default: return -1;
    }
}

Fields::Fields(
    nvinfer1::PluginFieldCollection const* fc, char const* op, ops::AttrSpec const* specs, int32_t numSpecs)
    : mFc(fc)
    , mOp(op)
    , mSpecs(specs)
    , mNumSpecs(numSpecs)
{
    if (fc == nullptr)
    {
        return;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        char const* name = fc->fields[i].name;
        if (name == nullptr || spec(name) == nullptr)
        {
            // The ONNX parser also passes plugin_version / plugin_namespace; anything else is a typo.
            if (name && std::strcmp(name, "plugin_version") != 0 && std::strcmp(name, "plugin_namespace") != 0)
            {
                log(nvinfer1::ILogger::Severity::kWARNING, mOp + ": ignoring unknown field '" + name + "'");
            }
        }
    }
}

nvinfer1::PluginField const* Fields::find(char const* name) const noexcept
{
    if (mFc == nullptr)
    {
        return nullptr;
    }
    for (int32_t i = 0; i < mFc->nbFields; ++i)
    {
        if (mFc->fields[i].name != nullptr && std::strcmp(mFc->fields[i].name, name) == 0)
        {
            return &mFc->fields[i];
        }
    }
    return nullptr;
}

ops::AttrSpec const* Fields::spec(char const* name) const noexcept
{
    for (int32_t i = 0; i < mNumSpecs; ++i)
    {
        if (std::strcmp(mSpecs[i].name, name) == 0)
        {
            return &mSpecs[i];
        }
    }
    return nullptr;
}

void Fields::addError(std::string const& message)
{
    mError += (mError.empty() ? "" : "; ") + message;
}

std::vector<int32_t> Fields::ints(char const* name, bool required)
{
    ops::AttrSpec const* s = spec(name);
    nvinfer1::PluginField const* f = find(name);
    if (f == nullptr)
    {
        if (required)
        {
            addError(std::string("attribute '") + name + "' is missing");
        }
        return {};
    }
    int32_t const count = s ? s->count : 1;
    if (f->length != count || f->data == nullptr)
    {
        addError(std::string("attribute '") + name + "' has " + std::to_string(f->length) + " elements, expected "
            + std::to_string(count));
        return {};
    }
    std::vector<int32_t> values(static_cast<size_t>(count));
    if (f->type == nvinfer1::PluginFieldType::kINT32)
    {
        std::memcpy(values.data(), f->data, sizeof(int32_t) * values.size());
    }
    else if (f->type == nvinfer1::PluginFieldType::kINT64)
    {
        auto const* src = static_cast<int64_t const*>(f->data);
        for (size_t i = 0; i < values.size(); ++i)
        {
            values[i] = static_cast<int32_t>(src[i]);
        }
    }
    else
    {
        addError(std::string("attribute '") + name + "' is " + typeName(f->type) + ", expected int32");
        return {};
    }
    return values;
}

float Fields::real(char const* name, float fallback)
{
    nvinfer1::PluginField const* f = find(name);
    if (f == nullptr)
    {
        return fallback;
    }
    if (f->length != 1 || f->data == nullptr)
    {
        addError(std::string("attribute '") + name + "' must hold one value");
        return fallback;
    }
    if (f->type == nvinfer1::PluginFieldType::kFLOAT32)
    {
        return *static_cast<float const*>(f->data);
    }
    if (f->type == nvinfer1::PluginFieldType::kFLOAT64)
    {
        return static_cast<float>(*static_cast<double const*>(f->data));
    }
    addError(std::string("attribute '") + name + "' is " + typeName(f->type) + ", expected float32");
    return fallback;
}

std::vector<nvinfer1::PluginField> fieldDeclarations(ops::AttrSpec const* specs, int32_t numSpecs)
{
    std::vector<nvinfer1::PluginField> fields;
    for (int32_t i = 0; i < numSpecs; ++i)
    {
        auto const type = specs[i].type == ops::AttrType::kFloat ? nvinfer1::PluginFieldType::kFLOAT32
                                                                 : nvinfer1::PluginFieldType::kINT32;
        fields.emplace_back(specs[i].name, nullptr, type, specs[i].count);
    }
    return fields;
}

std::string toString(nvinfer1::Dims const& d)
{
    std::ostringstream os;
    os << "[";
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        os << (i ? ", " : "") << d.d[i];
    }
    os << "]";
    return os.str();
}

} // namespace ptdit::trt

// ---------------------------------------------------------------- TensorRT entry points
// Two ways in, one registration:
// 1. IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, Python
//    trt.get_plugin_registry().load_library) looks up getCreators / setLoggerFinder by name.
// 2. A plain dlopen (ctypes.CDLL, polygraphy --plugins, trtexec --staticPlugins): at load time
//    the library looks for getPluginRegistry in the TensorRT already loaded into the process
//    (no link to libnvinfer; REGISTER_TENSORRT_PLUGIN would need one) and registers there.
// A later loadLibrary of the same library calls getCreators, which first withdraws what the
// load-time registration added, so TensorRT registers each creator exactly once. A creator
// already in the registry (another copy of this library) is never registered again.

namespace
{
// Constant-initialised on purpose: the load-time constructor may run before this file's dynamic
// initialisers (a std::vector here would be reset after it had been filled).
constexpr int32_t kNbCreators = 3;
std::mutex gRegistrationMutex;
nvinfer1::IPluginRegistry* gLoadRegistry = nullptr;                     // where the load-time pass registered
nvinfer1::IPluginCreatorInterface* gLoadRegistered[kNbCreators] = {};  // what it registered there
int32_t gNbLoadRegistered = 0;

nvinfer1::IPluginCreatorInterface* const* creatorList(int32_t& nbCreators)
{
    static ptdit::trt::PluginCreator<ptdit::trt::ProxyPoolPlugin> proxyPool;
    static ptdit::trt::PluginCreator<ptdit::trt::WindowAttentionPlugin> windowAttention;
    static ptdit::trt::PluginCreator<ptdit::trt::ShiftedWindowAttentionPlugin> shiftedWindowAttention;
    static nvinfer1::IPluginCreatorInterface* const creators[kNbCreators] = {&proxyPool, &windowAttention, &shiftedWindowAttention};
    nbCreators = kNbCreators;
    return creators;
}

#define PTDIT_STR2(x) #x
#define PTDIT_STR(x) PTDIT_STR2(x)

// A symbol of the TensorRT runtime already in this process, or null. Libraries a Python
// extension pulled in are not in the global scope, so they are asked for by soname with
// RTLD_NOLOAD (which never loads anything).
void* tensorrtSymbol(char const* name)
{
    if (void* sym = dlsym(RTLD_DEFAULT, name))
    {
        return sym;
    }
    static char const* const libraries[] = {"libnvinfer.so." PTDIT_STR(NV_TENSORRT_MAJOR),
        "libnvinfer_lean.so." PTDIT_STR(NV_TENSORRT_MAJOR), "libnvinfer.so", "libnvinfer_lean.so"};
    for (char const* library : libraries)
    {
        if (void* handle = dlopen(library, RTLD_LAZY | RTLD_NOLOAD))
        {
            void* sym = dlsym(handle, name);
            dlclose(handle); // drops the reference NOLOAD took; the library stays loaded
            if (sym)
            {
                return sym;
            }
        }
    }
    return nullptr;
}

__attribute__((constructor)) void registerWithLoadedTensorRT() noexcept
{
    using GetRegistry = nvinfer1::IPluginRegistry* (*) ();
    using GetVersion = int32_t (*)();
    auto getRegistry = reinterpret_cast<GetRegistry>(tensorrtSymbol("getPluginRegistry"));
    auto getVersion = reinterpret_cast<GetVersion>(tensorrtSymbol("getInferLibVersion"));
    if (getRegistry == nullptr || getVersion == nullptr)
    {
        return; // TensorRT is not loaded (yet): loadLibrary will register through getCreators
    }
    int32_t const version = getVersion();
    if (version / 10000 != NV_TENSORRT_MAJOR)
    {
        // IPluginRegistry's layout differs between major versions: calling into it would be unsafe.
        ptdit::trt::log(nvinfer1::ILogger::Severity::kWARNING,
            "built against TensorRT " PTDIT_STR(NV_TENSORRT_MAJOR) " headers but TensorRT " + std::to_string(version / 10000)
                + "." + std::to_string(version / 100 % 100) + " is loaded: not registering on load (rebuild "
                "libptdit_plugins.so against this TensorRT's headers)");
        return;
    }
    nvinfer1::IPluginRegistry* registry = getRegistry();
    if (registry == nullptr)
    {
        return;
    }
    std::lock_guard<std::mutex> lock(gRegistrationMutex);
    int32_t n = 0;
    nvinfer1::IPluginCreatorInterface* const* creators = creatorList(n);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* creator = static_cast<nvinfer1::IPluginCreatorV3One*>(creators[i]);
        char const* ns = creator->getPluginNamespace();
        if (registry->getCreator(creator->getPluginName(), creator->getPluginVersion(), ns) != nullptr)
        {
            continue; // registered already (another copy of this library): never twice
        }
        if (registry->registerCreator(*creators[i], ns))
        {
            gLoadRegistered[gNbLoadRegistered++] = creators[i];
        }
    }
    gLoadRegistry = registry;
}
} // namespace

extern "C" PTDIT_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    std::lock_guard<std::mutex> lock(gRegistrationMutex);
    // loadLibrary registers what this returns and fails if any of it is registered already:
    // hand back the load-time registrations first.
    for (int32_t i = 0; i < gNbLoadRegistered; ++i)
    {
        gLoadRegistry->deregisterCreator(*gLoadRegistered[i]);
    }
    gNbLoadRegistered = 0;
    return creatorList(nbCreators);
}

extern "C" PTDIT_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    ptdit::trt::gLoggerFinder.store(finder);
}
