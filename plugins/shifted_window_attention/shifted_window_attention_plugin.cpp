// TensorRT plugin PTDiTShiftedWindowAttention: wraps ptdit_shifted_window_attention
// (shifted_window_attention.cu). The grid values are data (read by the kernel on the device),
// so one engine serves every resolution its optimisation profile allows.
#include "shifted_window_attention/shifted_window_attention_plugin.h"
#include "window_attention/window_attention_plugin.h"

namespace ptdit::trt
{
namespace op = ops::PTDiTShiftedWindowAttention;

std::unique_ptr<ShiftedWindowAttentionPlugin> ShiftedWindowAttentionPlugin::create(
    nvinfer1::PluginFieldCollection const* fc, std::string& error)
{
    Fields fields(fc, kName, kAttributes, kNumAttributes);
    std::vector<int32_t> const heads = fields.ints(op::kAttr_num_heads, true);
    float const scale = fields.real(op::kAttr_scale, 0.f);
    std::vector<int32_t> const window = fields.ints(op::kAttr_window, true);
    if (!fields.ok())
    {
        error = fields.error();
        return nullptr;
    }
    if (heads[0] < 1)
    {
        error = "num_heads must be positive";
        return nullptr;
    }
    if (window[0] < 1 || window[1] < 1 || window[2] < 1)
    {
        error = "window must be three positive sizes";
        return nullptr;
    }
    return std::make_unique<ShiftedWindowAttentionPlugin>(
        heads[0], scale, std::array<int32_t, 3>{window[0], window[1], window[2]});
}

ShiftedWindowAttentionPlugin::ShiftedWindowAttentionPlugin(int32_t numHeads, float scale, std::array<int32_t, 3> window)
    : mNumHeads(numHeads)
    , mScale(scale)
    , mWindow(window)
{
}

bool ShiftedWindowAttentionPlugin::checkGridAndWindow(nvinfer1::Dims const& q, nvinfer1::Dims const& grid) const
{
    if (grid.nbDims != 1 || (grid.d[0] != -1 && grid.d[0] != 3))
    {
        logError(std::string(kName) + ": grid must be an int32 tensor of shape [3] (F, h, w), got " + toString(grid));
        return false;
    }
    int64_t const tokens = static_cast<int64_t>(mWindow[0]) * mWindow[1] * mWindow[2];
    if (q.d[1] != -1 && q.d[1] != tokens)
    {
        logError(std::string(kName) + ": q " + toString(q) + " has " + std::to_string(q.d[1])
            + " tokens per window but window (" + std::to_string(mWindow[0]) + ", " + std::to_string(mWindow[1]) + ", "
            + std::to_string(mWindow[2]) + ") holds " + std::to_string(tokens));
        return false;
    }
    return true;
}

int32_t ShiftedWindowAttentionPlugin::checkDeviceGrid(
    int32_t const* grid, AttentionSizes const& s, cudaStream_t stream) const noexcept
{
    // The grid is data on the device. Outside a CUDA graph capture read it (12 bytes, after the
    // work queued before it) so that a grid that does not describe q fails this enqueue instead of
    // silently writing NaN. While capturing no synchronisation is allowed: the kernel's own device
    // check (NaN output) is all there is, and the uncaptured warm-up run has checked these shapes.
    // Not while building either: the builder may time enqueue on inputs that hold no real grid.
    if (mPhase != nvinfer1::TensorRTPhase::kRUNTIME)
    {
        return 0;
    }
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess || capture != cudaStreamCaptureStatusNone)
    {
        cudaGetLastError(); // clear a capture-related error; the kernel checks on the device
        return 0;
    }
    int32_t host[3] = {0, 0, 0};
    cudaError_t err = cudaMemcpyAsync(host, grid, sizeof(host), cudaMemcpyDeviceToHost, stream);
    if (err == cudaSuccess)
    {
        err = cudaStreamSynchronize(stream);
    }
    if (err != cudaSuccess)
    {
        logError(std::string(kName) + ": reading the grid input failed: " + cudaGetErrorName(err) + " ("
            + cudaGetErrorString(err) + ")");
        return 1;
    }
    if (ptdit_check_shifted_grid(host, mWindow.data(), s.rows, s.tokens) != PTDIT_OK)
    {
        logError(std::string(kName) + ": " + ptdit_last_error());
        return 1;
    }
    return 0;
}

int32_t ShiftedWindowAttentionPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept
{
    if (nbInputs != op::kNumInputs)
    {
        logError(std::string(kName) + ": expects inputs q, k, v, grid");
        return 1;
    }
    nvinfer1::Dims const& q = in[op::kInput_q].desc.dims;
    bool const ok = checkAttentionInputs(kName, q, in[op::kInput_k].desc.dims, in[op::kInput_v].desc.dims, mNumHeads)
        && checkGridAndWindow(q, in[op::kInput_grid].desc.dims) && checkAttentionProfile(kName, in, mNumHeads)
        && (in[op::kInput_q].max.nbDims != 3 || checkGridAndWindow(in[op::kInput_q].max, in[op::kInput_grid].max));
    return ok ? 0 : 1;
}

int32_t ShiftedWindowAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbInputs != op::kNumInputs || nbOutputs != 1 || inputs[op::kInput_q].nbDims != 3)
    {
        logError(std::string(kName) + ": expects q, k, v of shape [R, N, H*dh] and grid [3]");
        return 1;
    }
    outputs[0] = inputs[op::kInput_q]; // out has q's shape
    return 0;
}

bool ShiftedWindowAttentionPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != op::kNumInputs || nbOutputs != 1 || pos < 0 || pos > op::kNumInputs)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (pos == op::kNumInputs) // out: q's dtype
    {
        return desc.format == nvinfer1::TensorFormat::kLINEAR && desc.type == inOut[op::kInput_q].desc.type;
    }
    if (pos == op::kInput_grid)
    {
        return desc.format == nvinfer1::TensorFormat::kLINEAR && allowedType(op::kInputs[pos], desc.type);
    }
    return qkvFormatSupported(op::kInputs[pos], pos, inOut);
}

int32_t ShiftedWindowAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    AttentionSizes s{};
    if (!attentionSizes(kName, inputDesc, mNumHeads, s)
        || !checkGridAndWindow(inputDesc[op::kInput_q].dims, inputDesc[op::kInput_grid].dims))
    {
        return 1;
    }
    if (s.rows == 0)
    {
        return 0; // an empty batch
    }
    auto const* grid = static_cast<int32_t const*>(inputs[op::kInput_grid]);
    if (checkDeviceGrid(grid, s, stream) != 0)
    {
        return 1;
    }
    int32_t const rc = ptdit_shifted_window_attention(inputs[op::kInput_q], inputs[op::kInput_k],
        inputs[op::kInput_v], outputs[0], static_cast<int32_t const*>(inputs[op::kInput_grid]),
        kernelDtype(inputDesc[op::kInput_q].type), s.rows, s.tokens, mNumHeads, s.headDim, mScale, mWindow.data(),
        stream);
    if (rc != PTDIT_OK)
    {
        logError(std::string(kName) + ": " + ptdit_last_error());
    }
    return rc;
}

nvinfer1::PluginFieldCollection const* ShiftedWindowAttentionPlugin::getFieldsToSerialize() noexcept
{
    return serialize({
        nvinfer1::PluginField(op::kAttr_num_heads, &mNumHeads, nvinfer1::PluginFieldType::kINT32, op::kCount_num_heads),
        nvinfer1::PluginField(op::kAttr_scale, &mScale, nvinfer1::PluginFieldType::kFLOAT32, op::kCount_scale),
        nvinfer1::PluginField(op::kAttr_window, mWindow.data(), nvinfer1::PluginFieldType::kINT32, op::kCount_window),
    });
}

} // namespace ptdit::trt
