// TensorRT plugin PTDiTWindowAttention (IPluginV3): q, k, v [R, N, H*dh] -> out [R, N, H*dh].
// Also the q/k/v checks PTDiTShiftedWindowAttention shares.
#pragma once

#include "plugin_common.h"

namespace ptdit::trt
{

// Sizes of one attention call read from q's descriptor, after checking k and v match q.
struct AttentionSizes
{
    int64_t rows;
    int32_t tokens;
    int32_t headDim;
};

// Checks q, k, v ([R, N, H*dh], equal shapes, one dtype) and the head split; logs and returns
// false if they do not fit. Dimensions of -1 (build time, unknown) pass.
bool checkAttentionInputs(
    char const* op, nvinfer1::Dims const& q, nvinfer1::Dims const& k, nvinfer1::Dims const& v, int32_t numHeads);

// The same checks on the profile's largest shapes (q, k, v max dims), plus rows * tokens < 2^31,
// so a profile that admits sizes the kernels refuse fails the build, not a later enqueue.
bool checkAttentionProfile(char const* op, nvinfer1::DynamicPluginTensorDesc const* in, int32_t numHeads);

// Sizes at enqueue time (all dimensions known), or false after logging why not.
bool attentionSizes(char const* op, nvinfer1::PluginTensorDesc const* inputDesc, int32_t numHeads, AttentionSizes& sizes);

// Does q/k/v position `pos` support inOut[pos]: linear, an ops.json dtype, same dtype as q.
bool qkvFormatSupported(ops::InputSpec const& input, int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut);

class WindowAttentionPlugin : public PluginBase<WindowAttentionPlugin>
{
public:
    static constexpr char const* kName = ops::PTDiTWindowAttention::kName;
    static constexpr char const* kVersion = ops::PTDiTWindowAttention::kVersion;
    static constexpr ops::AttrSpec const* kAttributes = ops::PTDiTWindowAttention::kAttributes;
    static constexpr int32_t kNumAttributes = ops::PTDiTWindowAttention::kNumAttributes;

    static std::unique_ptr<WindowAttentionPlugin> create(nvinfer1::PluginFieldCollection const* fc, std::string& error);

    // scale <= 0 means 1 / sqrt(head_dim)
    WindowAttentionPlugin(int32_t numHeads, float scale);
    WindowAttentionPlugin(WindowAttentionPlugin const&) = default;

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
    int32_t mNumHeads;
    float mScale;
};

} // namespace ptdit::trt
