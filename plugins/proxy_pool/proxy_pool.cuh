// PTDiTProxyPool kernel parameters (see proxy_pool.cu and ptdit_proxy_pool in ptdit_kernels.h).
#pragma once

#include <stdint.h>

namespace ptdit
{

struct ProxyPoolParams
{
    void const* x;    // [rows, tokens, channels]
    void* out;        // [rows, proxies, channels]
    int64_t rows;     // windows in the batch (R)
    int32_t tokens;   // tokens per window, wf * wh * ww
    int64_t channels; // C
    int32_t proxies;  // gh * gw
    int32_t members;  // tokens averaged per proxy, wf * (wh / gh) * (ww / gw)
    int32_t wh, ww;   // window rows, columns
    int32_t gh, gw;   // proxies per window along rows, columns
};

} // namespace ptdit
