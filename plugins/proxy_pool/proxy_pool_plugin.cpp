// TensorRT plugin PTDiTProxyPool: wraps ptdit_proxy_pool (proxy_pool.cu).
#include "proxy_pool/proxy_pool_plugin.h"

#include <climits>

namespace ptdit::trt
{
namespace op = ops::PTDiTProxyPool;

constexpr int64_t kMaxChannels = 65535 * 32; // ptdit_proxy_pool's limit (grid.y * 32 channel vectors)

std::unique_ptr<ProxyPoolPlugin> ProxyPoolPlugin::create(nvinfer1::PluginFieldCollection const* fc, std::string& error)
{
    Fields fields(fc, kName, kAttributes, kNumAttributes);
    std::vector<int32_t> const window = fields.ints(op::kAttr_window, true);
    std::vector<int32_t> const groups = fields.ints(op::kAttr_groups, true);
    if (!fields.ok())
    {
        error = fields.error();
        return nullptr;
    }
    if (window[0] < 1 || window[1] < 1 || window[2] < 1)
    {
        error = "window must be three positive sizes";
        return nullptr;
    }
    if (groups[0] != 1 || groups[1] < 1 || groups[2] < 1 || window[1] % groups[1] != 0 || window[2] % groups[2] != 0)
    {
        error = "groups must be (1, gh, gw) with gh dividing window[1] and gw dividing window[2]";
        return nullptr;
    }
    return std::make_unique<ProxyPoolPlugin>(
        std::array<int32_t, 3>{window[0], window[1], window[2]}, std::array<int32_t, 3>{groups[0], groups[1], groups[2]});
}

ProxyPoolPlugin::ProxyPoolPlugin(std::array<int32_t, 3> window, std::array<int32_t, 3> groups)
    : mWindow(window)
    , mGroups(groups)
{
}

int32_t ProxyPoolPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept
{
    if (nbInputs != op::kNumInputs || in[0].desc.dims.nbDims != 3)
    {
        logError(std::string(kName) + ": expects one input x of shape [R, N, C]");
        return 1;
    }
    int64_t const tokens = in[0].desc.dims.d[1];
    int64_t const expected = static_cast<int64_t>(mWindow[0]) * mWindow[1] * mWindow[2];
    if (tokens != -1 && tokens != expected)
    {
        logError(std::string(kName) + ": x " + toString(in[0].desc.dims) + " has " + std::to_string(tokens)
            + " tokens per window but window (" + std::to_string(mWindow[0]) + ", " + std::to_string(mWindow[1]) + ", "
            + std::to_string(mWindow[2]) + ") holds " + std::to_string(expected));
        return 1;
    }
    // The profile's largest x must fit the kernel too (else the build succeeds and enqueue fails).
    nvinfer1::Dims const& hi = in[0].max;
    int64_t const proxies = static_cast<int64_t>(mGroups[1]) * mGroups[2];
    if (hi.nbDims == 3 && hi.d[0] >= 0 && hi.d[1] >= 0 && hi.d[2] >= 0)
    {
        if (hi.d[1] != expected || hi.d[2] < 1 || hi.d[2] > kMaxChannels || hi.d[0] * proxies > INT32_MAX)
        {
            logError(std::string(kName) + " (profile maximum): x " + toString(hi) + " does not fit: "
                + std::to_string(expected) + " tokens per window, 1 to " + std::to_string(kMaxChannels)
                + " channels and windows * " + std::to_string(proxies)
                + " proxies below 2^31 (lower the profile's largest batch or resolution)");
            return 1;
        }
    }
    return 0;
}

int32_t ProxyPoolPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != op::kNumInputs || nbOutputs != 1 || inputs[0].nbDims != 3)
    {
        logError(std::string(kName) + ": expects one input x of shape [R, N, C]");
        return 1;
    }
    outputs[0].nbDims = 3;
    outputs[0].d[0] = inputs[0].d[0];
    outputs[0].d[1] = exprBuilder.constant(static_cast<int64_t>(mGroups[1]) * mGroups[2]);
    outputs[0].d[2] = inputs[0].d[2];
    return 0;
}

bool ProxyPoolPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != op::kNumInputs || nbOutputs != 1 || pos < 0 || pos > 1)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == op::kInput_x)
    {
        return allowedType(op::kInputs[op::kInput_x], desc.type);
    }
    return desc.type == inOut[op::kInput_x].desc.type; // output: x's dtype
}

int32_t ProxyPoolPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    nvinfer1::Dims const& d = inputDesc[op::kInput_x].dims;
    if (d.nbDims != 3 || d.d[1] > INT32_MAX || d.d[2] > INT32_MAX)
    {
        logError(std::string(kName) + ": x " + toString(d) + " is not [R, N, C]");
        return 1;
    }
    if (d.d[0] == 0)
    {
        return 0; // an empty batch
    }
    int32_t const rc = ptdit_proxy_pool(inputs[op::kInput_x], outputs[0], kernelDtype(inputDesc[op::kInput_x].type),
        d.d[0], static_cast<int32_t>(d.d[1]), static_cast<int32_t>(d.d[2]), mWindow.data(), mGroups.data(), stream);
    if (rc != PTDIT_OK)
    {
        logError(std::string(kName) + ": " + ptdit_last_error());
    }
    return rc;
}

nvinfer1::PluginFieldCollection const* ProxyPoolPlugin::getFieldsToSerialize() noexcept
{
    return serialize({
        nvinfer1::PluginField(op::kAttr_window, mWindow.data(), nvinfer1::PluginFieldType::kINT32, op::kCount_window),
        nvinfer1::PluginField(op::kAttr_groups, mGroups.data(), nvinfer1::PluginFieldType::kINT32, op::kCount_groups),
    });
}

} // namespace ptdit::trt
