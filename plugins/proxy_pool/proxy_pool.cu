// PTDiTProxyPool: average each window into its proxy tokens (strided grouping, time averaged
// over the whole window). Memory-bound: a block of 32 x 8 threads owns one (window, proxy) and
// 32 channel vectors of 16 bytes; the 8 thread rows split the proxy's members, sum in fp32, and
// meet in shared memory.
#include "kernel_common.h"
#include "proxy_pool/proxy_pool.cuh"
#include "ptdit_kernels.h"

#include "device_utils.cuh"
#include "window_index.cuh"

namespace ptdit
{
namespace
{

constexpr int kLanes = 32;   // channel vectors per block
constexpr int kSplits = 8;   // member splits per block

template <typename T, int V>
__global__ void __launch_bounds__(kLanes* kSplits) proxy_pool_kernel(ProxyPoolParams const p)
{
    __shared__ float partial[kSplits][kLanes][V];
    int64_t const rs = blockIdx.x;            // (window, proxy)
    int64_t const r = rs / p.proxies;
    int const s = static_cast<int>(rs % p.proxies);
    int const cv = blockIdx.y * kLanes + threadIdx.x; // channel vector
    bool const active = static_cast<int64_t>(cv) * V < p.channels;

    float acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e)
    {
        acc[e] = 0.f;
    }
    if (active)
    {
        T const* const x = static_cast<T const*>(p.x) + r * p.tokens * p.channels + static_cast<int64_t>(cv) * V;
#pragma unroll 4
        for (int m = threadIdx.y; m < p.members; m += kSplits)
        {
            int const n = proxy_member_token(m, s, p.wh, p.ww, p.gh, p.gw);
            Vec<T, V> const in = *reinterpret_cast<Vec<T, V> const*>(x + n * p.channels);
#pragma unroll
            for (int e = 0; e < V; ++e)
            {
                acc[e] += to_float(in.v[e]);
            }
        }
    }
#pragma unroll
    for (int e = 0; e < V; ++e)
    {
        partial[threadIdx.y][threadIdx.x][e] = acc[e];
    }
    __syncthreads();
    if (threadIdx.y == 0 && active)
    {
        Vec<T, V> res;
#pragma unroll
        for (int e = 0; e < V; ++e)
        {
            float sum = 0.f;
#pragma unroll
            for (int y = 0; y < kSplits; ++y)
            {
                sum += partial[y][threadIdx.x][e];
            }
            res.v[e] = from_float<T>(sum / static_cast<float>(p.members));
        }
        T* const out = static_cast<T*>(p.out) + rs * p.channels + static_cast<int64_t>(cv) * V;
        *reinterpret_cast<Vec<T, V>*>(out) = res;
    }
}

template <typename T>
int32_t launch(ProxyPoolParams const& p, void const* x, void* out, cudaStream_t stream)
{
    constexpr int kVec = 16 / sizeof(T);
    bool const vectorised = p.channels % kVec == 0 && aligned16(x) && aligned16(out);
    int const v = vectorised ? kVec : 1;
    int64_t const vectors = (p.channels + v - 1) / v;
    dim3 const grid(static_cast<unsigned>(p.rows * p.proxies), static_cast<unsigned>((vectors + kLanes - 1) / kLanes));
    dim3 const block(kLanes, kSplits);
    if (vectorised)
    {
        proxy_pool_kernel<T, kVec><<<grid, block, 0, stream>>>(p);
    }
    else
    {
        proxy_pool_kernel<T, 1><<<grid, block, 0, stream>>>(p);
    }
    return check_launch("ptdit_proxy_pool");
}

} // namespace
} // namespace ptdit

extern "C" PTDIT_API int32_t ptdit_proxy_pool(void const* x, void* out, int32_t dtype, int64_t rows, int32_t tokens,
    int32_t channels, int32_t const window[3], int32_t const groups[3], cudaStream_t stream)
{
    using namespace ptdit;
    clear_error();
    if (window == nullptr || groups == nullptr)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT, "ptdit_proxy_pool: window and groups must be int32[3]");
    }
    int32_t const wf = window[0], wh = window[1], ww = window[2];
    if (wf < 1 || wh < 1 || ww < 1 || static_cast<int64_t>(wf) * wh * ww != tokens)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "ptdit_proxy_pool: window (%d, %d, %d) does not hold the %d tokens per window of x", wf, wh, ww, tokens);
    }
    if (groups[0] != 1 || groups[1] < 1 || groups[2] < 1 || wh % groups[1] != 0 || ww % groups[2] != 0)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "ptdit_proxy_pool: groups (%d, %d, %d) do not fit window (%d, %d, %d): groups[0] must be 1 and "
            "groups[1], groups[2] must divide window[1], window[2]",
            groups[0], groups[1], groups[2], wf, wh, ww);
    }
    if (dtype != PTDIT_FLOAT32 && dtype != PTDIT_FLOAT16 && dtype != PTDIT_BFLOAT16)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "ptdit_proxy_pool: dtype %d is not float32 (0), float16 (1) or bfloat16 (2)", dtype);
    }
    int64_t const proxies = static_cast<int64_t>(groups[1]) * groups[2];
    if (channels < 1 || channels > 65535 * kLanes || rows < 0 || rows * proxies > INT32_MAX)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "ptdit_proxy_pool: %lld windows x %lld proxies x %d channels is out of range (1 <= channels "
            "<= 2097120, windows * proxies < 2^31)",
            static_cast<long long>(rows), static_cast<long long>(proxies), channels);
    }
    if (rows == 0)
    {
        return PTDIT_OK; // an empty batch: nothing to read (its tensors may well be null)
    }
    if (x == nullptr || out == nullptr)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT, "ptdit_proxy_pool: a tensor pointer is null");
    }

    ProxyPoolParams p{};
    p.x = x;
    p.out = out;
    p.rows = rows;
    p.tokens = tokens;
    p.channels = channels;
    p.proxies = static_cast<int32_t>(proxies);
    p.members = wf * (wh / groups[1]) * (ww / groups[2]);
    p.wh = wh;
    p.ww = ww;
    p.gh = groups[1];
    p.gw = groups[2];
    switch (dtype)
    {
    case PTDIT_FLOAT16: return launch<__half>(p, x, out, stream);
    case PTDIT_BFLOAT16: return launch<__nv_bfloat16>(p, x, out, stream);
    default: return launch<float>(p, x, out, stream);
    }
}
