// TensorRT plugin PTDiTShiftedWindowAttention (IPluginV3): q, k, v [R, N, H*dh] in the
// unshifted window-major layout + grid int32 [3] (F, h, w) on the device -> out [R, N, H*dh].
#pragma once

#include "plugin_common.h"

#include <array>

namespace ptdit::trt
{

struct AttentionSizes; // window_attention_plugin.h

class ShiftedWindowAttentionPlugin : public PluginBase<ShiftedWindowAttentionPlugin>
{
public:
    static constexpr char const* kName = ops::PTDiTShiftedWindowAttention::kName;
    static constexpr char const* kVersion = ops::PTDiTShiftedWindowAttention::kVersion;
    static constexpr ops::AttrSpec const* kAttributes = ops::PTDiTShiftedWindowAttention::kAttributes;
    static constexpr int32_t kNumAttributes = ops::PTDiTShiftedWindowAttention::kNumAttributes;

    static std::unique_ptr<ShiftedWindowAttentionPlugin> create(
        nvinfer1::PluginFieldCollection const* fc, std::string& error);

    // scale <= 0 means 1 / sqrt(head_dim)
    ShiftedWindowAttentionPlugin(int32_t numHeads, float scale, std::array<int32_t, 3> window);
    ShiftedWindowAttentionPlugin(ShiftedWindowAttentionPlugin const&) = default;

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
    bool checkGridAndWindow(nvinfer1::Dims const& q, nvinfer1::Dims const& grid) const;
    // Reads the device grid (unless the stream is being captured) and checks it describes q.
    int32_t checkDeviceGrid(int32_t const* grid, AttentionSizes const& sizes, cudaStream_t stream) const noexcept;

    int32_t mNumHeads;
    float mScale;
    std::array<int32_t, 3> mWindow;
};

} // namespace ptdit::trt
