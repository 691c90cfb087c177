// TensorRT plugin PTDiTWindowAttention: wraps ptdit_window_attention (window_attention.cu).
#include "window_attention/window_attention_plugin.h"

#include <climits>

namespace ptdit::trt
{
namespace op = ops::PTDiTWindowAttention;

bool checkAttentionInputs(
    char const* opName, nvinfer1::Dims const& q, nvinfer1::Dims const& k, nvinfer1::Dims const& v, int32_t numHeads)
{
    std::string const name(opName);
    if (q.nbDims != 3 || k.nbDims != 3 || v.nbDims != 3)
    {
        logError(name + ": q, k, v must be [R, N, H*dh], got q " + toString(q) + ", k " + toString(k) + ", v "
            + toString(v));
        return false;
    }
    for (int32_t i = 0; i < 3; ++i)
    {
        bool const known = q.d[i] != -1 && k.d[i] != -1 && v.d[i] != -1;
        if (known && (k.d[i] != q.d[i] || v.d[i] != q.d[i]))
        {
            logError(name + ": q " + toString(q) + ", k " + toString(k) + " and v " + toString(v) + " differ in shape");
            return false;
        }
    }
    int64_t const channels = q.d[2];
    if (channels != -1)
    {
        int64_t const headDim = channels / numHeads;
        if (channels % numHeads != 0 || headDim % 8 != 0 || headDim < 8 || headDim > 128)
        {
            logError(name + ": " + std::to_string(channels) + " channels over " + std::to_string(numHeads)
                + " heads: the head dim must be a multiple of 8 from 8 to 128");
            return false;
        }
    }
    if (q.d[1] != -1 && (q.d[1] < 1 || q.d[1] > 1024))
    {
        logError(name + ": " + std::to_string(q.d[1]) + " tokens per window; supported: 1 to 1024");
        return false;
    }
    return true;
}

bool checkAttentionProfile(char const* opName, nvinfer1::DynamicPluginTensorDesc const* in, int32_t numHeads)
{
    nvinfer1::Dims const& q = in[0].max;
    if (q.nbDims != 3 || q.d[0] < 0 || q.d[1] < 0 || q.d[2] < 0)
    {
        return true; // no profile maximum given (a network with static shapes): the dims were checked
    }
    std::string const name = std::string(opName) + " (profile maximum)";
    if (!checkAttentionInputs(name.c_str(), q, in[1].max, in[2].max, numHeads))
    {
        return false;
    }
    if (q.d[0] * q.d[1] > INT32_MAX)
    {
        logError(name + ": q " + toString(q) + " allows " + std::to_string(q.d[0]) + " windows of "
            + std::to_string(q.d[1]) + " tokens, but windows * tokens must stay below 2^31: lower the profile's "
            "largest batch or resolution");
        return false;
    }
    return true;
}

bool attentionSizes(char const* opName, nvinfer1::PluginTensorDesc const* inputDesc, int32_t numHeads, AttentionSizes& sizes)
{
    nvinfer1::Dims const& q = inputDesc[0].dims;
    if (!checkAttentionInputs(opName, q, inputDesc[1].dims, inputDesc[2].dims, numHeads))
    {
        return false;
    }
    sizes.rows = q.d[0];
    sizes.tokens = static_cast<int32_t>(q.d[1]);
    sizes.headDim = static_cast<int32_t>(q.d[2] / numHeads);
    return true;
}

bool qkvFormatSupported(ops::InputSpec const& input, int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut)
{
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    return desc.format == nvinfer1::TensorFormat::kLINEAR && allowedType(input, desc.type)
        && (pos == 0 || desc.type == inOut[0].desc.type);
}

std::unique_ptr<WindowAttentionPlugin> WindowAttentionPlugin::create(
    nvinfer1::PluginFieldCollection const* fc, std::string& error)
{
    Fields fields(fc, kName, kAttributes, kNumAttributes);
    std::vector<int32_t> const heads = fields.ints(op::kAttr_num_heads, true);
    float const scale = fields.real(op::kAttr_scale, 0.f);
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
    return std::make_unique<WindowAttentionPlugin>(heads[0], scale);
}

WindowAttentionPlugin::WindowAttentionPlugin(int32_t numHeads, float scale)
    : mNumHeads(numHeads)
    , mScale(scale)
{
}

int32_t WindowAttentionPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept
{
    if (nbInputs != op::kNumInputs)
    {
        logError(std::string(kName) + ": expects inputs q, k, v");
        return 1;
    }
    return checkAttentionInputs(kName, in[op::kInput_q].desc.dims, in[op::kInput_k].desc.dims,
               in[op::kInput_v].desc.dims, mNumHeads)
            && checkAttentionProfile(kName, in, mNumHeads)
        ? 0
        : 1;
}

int32_t WindowAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbInputs != op::kNumInputs || nbOutputs != 1 || inputs[op::kInput_q].nbDims != 3)
    {
        logError(std::string(kName) + ": expects q, k, v of shape [R, N, H*dh]");
        return 1;
    }
    outputs[0] = inputs[op::kInput_q]; // out has q's shape
    return 0;
}

bool WindowAttentionPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != op::kNumInputs || nbOutputs != 1 || pos < 0 || pos > op::kNumInputs)
    {
        return false;
    }
    if (pos == op::kNumInputs) // out: q's dtype
    {
        return inOut[pos].desc.format == nvinfer1::TensorFormat::kLINEAR
            && inOut[pos].desc.type == inOut[op::kInput_q].desc.type;
    }
    return qkvFormatSupported(op::kInputs[pos], pos, inOut);
}

int32_t WindowAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    AttentionSizes s{};
    if (!attentionSizes(kName, inputDesc, mNumHeads, s))
    {
        return 1;
    }
    if (s.rows == 0)
    {
        return 0; // an empty batch
    }
    int32_t const rc = ptdit_window_attention(inputs[op::kInput_q], inputs[op::kInput_k], inputs[op::kInput_v],
        outputs[0], kernelDtype(inputDesc[op::kInput_q].type), s.rows, s.tokens, mNumHeads, s.headDim, mScale, stream);
    if (rc != PTDIT_OK)
    {
        logError(std::string(kName) + ": " + ptdit_last_error());
    }
    return rc;
}

nvinfer1::PluginFieldCollection const* WindowAttentionPlugin::getFieldsToSerialize() noexcept
{
    return serialize({
        nvinfer1::PluginField(op::kAttr_num_heads, &mNumHeads, nvinfer1::PluginFieldType::kINT32, op::kCount_num_heads),
        nvinfer1::PluginField(op::kAttr_scale, &mScale, nvinfer1::PluginFieldType::kFLOAT32, op::kCount_scale),
    });
}

} // namespace ptdit::trt
