// TensorRT plugin PTDiTProxyPool (IPluginV3): x [R, N, C] -> proxies [R, gh*gw, C].
#pragma once

#include "plugin_common.h"

#include <array>

namespace ptdit::trt
{

class ProxyPoolPlugin : public PluginBase<ProxyPoolPlugin>
{
public:
    static constexpr char const* kName = ops::PTDiTProxyPool::kName;
    static constexpr char const* kVersion = ops::PTDiTProxyPool::kVersion;
    static constexpr ops::AttrSpec const* kAttributes = ops::PTDiTProxyPool::kAttributes;
    static constexpr int32_t kNumAttributes = ops::PTDiTProxyPool::kNumAttributes;

    // nullptr (and `error` says why) if the fields do not describe a valid op.
    static std::unique_ptr<ProxyPoolPlugin> create(nvinfer1::PluginFieldCollection const* fc, std::string& error);

    ProxyPoolPlugin(std::array<int32_t, 3> window, std::array<int32_t, 3> groups);
    ProxyPoolPlugin(ProxyPoolPlugin const&) = default;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    std::array<int32_t, 3> mWindow;
    std::array<int32_t, 3> mGroups;
};

} // namespace ptdit::trt
