// Pieces every PT-DiT TensorRT plugin shares: logging through TensorRT's logger, dtype
// mapping, PluginField parsing against the generated op description (ptdit_ops.h, from
// ops.json), a CRTP base for the IPluginV3 boilerplate, and a creator template.
//
// The library never links libnvinfer: everything here is virtual calls on objects TensorRT
// hands over. Registration is through the exported getCreators() (plugin_common.cpp).
#pragma once

#include "ptdit_kernels.h"
#include "ptdit_ops.h"

#include <NvInferRuntime.h>

#include <memory>
#include <string>
#include <vector>

namespace ptdit::trt
{

using nvinfer1::DataType;

// Message to TensorRT's logger (set by setLoggerFinder), or stderr before TensorRT gave one.
void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;
inline void logError(std::string const& message) noexcept
{
    log(nvinfer1::ILogger::Severity::kERROR, message);
}

// Is `type` among the dtypes ops.json allows for an input?
bool allowedType(ops::InputSpec const& input, DataType type) noexcept;

// PTDIT_FLOAT32 / _FLOAT16 / _BFLOAT16 for the kernels, -1 for anything else.
int32_t kernelDtype(DataType type) noexcept;

// Attribute values read from a PluginFieldCollection, checked against the op's AttrSpec table
// (name, type, element count). ONNX INT/INTS arrive as int32, FLOAT as float32; int64 and
// float64 are accepted too for networks built by hand.
class Fields
{
public:
    Fields(nvinfer1::PluginFieldCollection const* fc, char const* op, ops::AttrSpec const* specs, int32_t numSpecs);

    // Values of an int / ints attribute (empty if absent); records an error on a bad field.
    std::vector<int32_t> ints(char const* name, bool required);
    // Value of a float attribute, `fallback` if absent.
    float real(char const* name, float fallback);

    bool ok() const noexcept
    {
        return mError.empty();
    }
    std::string const& error() const noexcept
    {
        return mError;
    }

private:
    nvinfer1::PluginField const* find(char const* name) const noexcept;
    ops::AttrSpec const* spec(char const* name) const noexcept;
    void addError(std::string const& message);

    nvinfer1::PluginFieldCollection const* mFc;
    std::string mOp;
    ops::AttrSpec const* mSpecs;
    int32_t mNumSpecs;
    std::string mError;
};

// PluginField declarations (name, type, length; no data) of an op's attributes, for
// IPluginCreatorV3One::getFieldNames.
std::vector<nvinfer1::PluginField> fieldDeclarations(ops::AttrSpec const* specs, int32_t numSpecs);

// The IPluginV3 boilerplate. Derived provides kName, kVersion (from ptdit_ops.h) and the
// build/runtime methods; it must be copyable (clone and attachToContext copy it).
template <typename Derived>
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    nvinfer1::IPluginV3* clone() noexcept override
    {
        try
        {
            return new Derived(static_cast<Derived const&>(*this));
        }
        catch (std::exception const& e)
        {
            logError(std::string(Derived::kName) + ": clone failed: " + e.what());
            return nullptr;
        }
    }

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override
    {
        return Derived::kName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return Derived::kVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return ops::kPluginNamespace;
    }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }
    int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
        int32_t nbInputs) const noexcept override
    {
        if (nbOutputs != 1 || nbInputs < 1)
        {
            return 1;
        }
        outputTypes[0] = inputTypes[0]; // the output has q's (x's) dtype
        return 0;
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* /*in*/, int32_t /*nbInputs*/,
        nvinfer1::PluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept override
    {
        return 0; // sizes are read from the descriptors in enqueue
    }
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept override
    {
        return clone(); // no per-context resources
    }

    // The phase the creator made this plugin for (copied by clone and attachToContext).
    void setPhase(nvinfer1::TensorRTPhase phase) noexcept
    {
        mPhase = phase;
    }

protected:
    // kBUILD: enqueue may run on the builder's profiling data, not on the network's real values.
    nvinfer1::TensorRTPhase mPhase{nvinfer1::TensorRTPhase::kBUILD};

    PluginBase() = default;
    PluginBase(PluginBase const&) = default;
    PluginBase& operator=(PluginBase const&) = delete;

    // Holds the PluginFields handed out by getFieldsToSerialize (rebuilt on each call, so the
    // pointers always refer to this object's members, also after a copy).
    std::vector<nvinfer1::PluginField> mSerialized;
    nvinfer1::PluginFieldCollection mSerializedCollection{};

    nvinfer1::PluginFieldCollection const* serialize(std::vector<nvinfer1::PluginField> fields) noexcept
    {
        mSerialized = std::move(fields);
        mSerializedCollection.nbFields = static_cast<int32_t>(mSerialized.size());
        mSerializedCollection.fields = mSerialized.data();
        return &mSerializedCollection;
    }
};

// IPluginCreatorV3One for a plugin class with kName, kVersion, kAttributes, kNumAttributes and
// `static std::unique_ptr<Plugin> create(PluginFieldCollection const*, std::string& error)`.
template <typename Plugin>
class PluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    PluginCreator()
        : mDeclarations(fieldDeclarations(Plugin::kAttributes, Plugin::kNumAttributes))
    {
        mCollection.nbFields = static_cast<int32_t>(mDeclarations.size());
        mCollection.fields = mDeclarations.data();
    }

    char const* getPluginName() const noexcept override
    {
        return Plugin::kName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return Plugin::kVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return ops::kPluginNamespace;
    }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mCollection;
    }

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override
    {
        try
        {
            std::string error;
            std::unique_ptr<Plugin> plugin = Plugin::create(fc, error);
            if (!plugin)
            {
                logError(std::string(Plugin::kName) + " layer '" + (name ? name : "") + "': " + error);
                return nullptr;
            }
            plugin->setPhase(phase);
            return static_cast<nvinfer1::IPluginV3*>(plugin.release());
        }
        catch (std::exception const& e)
        {
            logError(std::string(Plugin::kName) + ": createPlugin failed: " + e.what());
            return nullptr;
        }
    }

private:
    std::vector<nvinfer1::PluginField> mDeclarations;
    nvinfer1::PluginFieldCollection mCollection{};
};

// Dims helpers
inline int64_t volumeOf(nvinfer1::Dims const& d, int32_t from, int32_t to) noexcept
{
    int64_t v = 1;
    for (int32_t i = from; i < to; ++i)
    {
        v *= d.d[i];
    }
    return v;
}
std::string toString(nvinfer1::Dims const& d);

} // namespace ptdit::trt
