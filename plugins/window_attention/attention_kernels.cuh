// Window attention kernels, shared by PTDiTWindowAttention and PTDiTShiftedWindowAttention
// (the SHIFTED template flag adds the roll, the re-windowing and the Swin region mask, all as
// index arithmetic on the rows a block reads and writes).
//
// fp16 / bf16: one block of 4 warps per (window, head, 64 queries); each warp owns 16 query
// rows. Q sits in registers as mma fragments, K/V stream through shared memory in tiles of 64
// keys (cp.async, double-buffered), S = Q K^T and O += P V run on tensor cores (mma.sync
// m16n8k16, fp32 accumulators) with an online softmax in between, FlashAttention-2 style: the
// probabilities go from the S accumulators to the A operand of P V without leaving registers.
// fp32: a plain CUDA-core kernel (one warp per query row at a time), for completeness.
#pragma once

#include "device_utils.cuh"
#include "kernel_common.h"
#include "window_index.cuh"

#include <atomic>
#include <cmath>
#include <cuda_runtime.h>

namespace ptdit
{

struct AttentionParams
{
    void const* q;         // [rows, tokens, channels]
    void const* k;         // same shape as q
    void const* v;         // same shape as q
    void* out;             // same shape as q
    int32_t const* grid;   // device (F, H, W) of one sample; shifted only
    int64_t rows;          // windows in the batch (R)
    int32_t tokens;        // tokens per window (N)
    int32_t head_dim;      // dh
    int64_t channels;      // heads * dh, the row length
    float scale_log2;      // score scale * log2(e): softmax runs in base 2
    int32_t window[3];     // (wf, wh, ww); shifted only
};

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kMaskBias = -10000.0f; // score bias across Swin regions (layout.MASK_VALUE)
constexpr int kMaxTokens = 1024;
constexpr int kMaxHeadDim = 128;

// ------------------------------------------------------------------ shared device pieces

// Row (of the [rows * tokens] row space) of every token of window `win` into sRow, and with
// SHIFTED the region id into sLab. False if the grid does not match rows and tokens.
template <bool SHIFTED>
__device__ bool map_window_rows(AttentionParams const& p, int64_t win, int32_t* sRow, uint8_t* sLab)
{
    int const N = p.tokens;
    if constexpr (SHIFTED)
    {
        ShiftGeometry const g = make_shift_geometry(
            __ldg(p.grid), __ldg(p.grid + 1), __ldg(p.grid + 2), p.window[0], p.window[1], p.window[2]);
        if (shift_grid_mismatch(g, p.rows, N) != 0)
        {
            return false;
        }
        int64_t const first = win / g.windows * g.windows; // first window of this sample
        int32_t const local = static_cast<int32_t>(win - first);
        for (int t = threadIdx.x; t < N; t += blockDim.x)
        {
            int32_t region = 0;
            int32_t const src = shifted_source_row(g, local, t, &region);
            sRow[t] = static_cast<int32_t>(first * N + src);
            sLab[t] = static_cast<uint8_t>(region);
        }
    }
    else
    {
        (void) sLab;
        for (int t = threadIdx.x; t < N; t += blockDim.x)
        {
            sRow[t] = static_cast<int32_t>(win * N + t);
        }
    }
    return true;
}

// NaN into this block's share of the output (the grid did not fit: fail visibly).
template <typename T>
__device__ void fill_nan(AttentionParams const& p, int64_t win, int head, int q0, int block_q)
{
    T* const out = static_cast<T*>(p.out);
    T const nan = from_float<T>(__int_as_float(0x7fc00000));
    int const n = min(block_q, p.tokens - q0);
    for (int i = threadIdx.x; i < n * p.head_dim; i += blockDim.x)
    {
        int64_t const row = win * p.tokens + q0 + i / p.head_dim;
        out[row * p.channels + static_cast<int64_t>(head) * p.head_dim + i % p.head_dim] = nan;
    }
}

// ------------------------------------------------------------------ tensor-core kernel

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kMmaBlockQ = 16 * kMmaWarps; // query rows per block, 16 per warp
constexpr int kMmaBlockK = 64;             // keys per tile

__host__ __device__ inline int round_up(int x, int m)
{
    return (x + m - 1) / m * m;
}

// Head dims run padded to a multiple of 16 (the mma k step); padding columns are zero.
inline int padded_head_dim(int head_dim)
{
    return head_dim <= 32 ? 32 : head_dim <= 64 ? 64 : head_dim <= 80 ? 80 : head_dim <= 96 ? 96 : 128;
}

inline size_t mma_smem_bytes(int dhp, int tokens)
{
    size_t const ld = static_cast<size_t>(dhp) + 8;
    size_t const n_pad = static_cast<size_t>(round_up(tokens, kMmaBlockK));
    return (kMmaBlockQ + 4 * kMmaBlockK) * ld * 2 + n_pad * (sizeof(int32_t) + sizeof(uint8_t));
}

template <typename T, int DHP, bool SHIFTED>
__global__ void __launch_bounds__(kMmaThreads, 2) attention_mma_kernel(AttentionParams const p)
{
    constexpr int LD = DHP + 8;  // smem row stride; the extra 16 B keep ldmatrix free of bank conflicts
    constexpr int VPR = DHP / 8; // 16-byte vectors per smem row
    constexpr int KC = DHP / 16; // k steps of Q K^T = pairs of 8-column tiles of O
    extern __shared__ __align__(16) unsigned char smem[];
    T* const sQ = reinterpret_cast<T*>(smem);  // [BQ][LD], reused to stage the output
    T* const sK = sQ + kMmaBlockQ * LD;        // [2][BK][LD]
    T* const sV = sK + 2 * kMmaBlockK * LD;    // [2][BK][LD]
    int const N = p.tokens;
    int const n_pad = (N + kMmaBlockK - 1) / kMmaBlockK * kMmaBlockK;
    int32_t* const sRow = reinterpret_cast<int32_t*>(sV + 2 * kMmaBlockK * LD); // [n_pad]
    uint8_t* const sLab = reinterpret_cast<uint8_t*>(sRow + n_pad);             // [n_pad]

    int64_t const win = blockIdx.x;
    int const head = blockIdx.y;
    int const q0 = blockIdx.z * kMmaBlockQ;
    int const tid = threadIdx.x;
    int const warp = tid / 32;
    int const lane = tid % 32;

    // 1. where this window's tokens live (the shifted window gathers them across the grid)
    if (!map_window_rows<SHIFTED>(p, win, sRow, sLab))
    {
        fill_nan<T>(p, win, head, q0, kMmaBlockQ);
        return;
    }
    __syncthreads();

    T const* const Q = static_cast<T const*>(p.q);
    T const* const K = static_cast<T const*>(p.k);
    T const* const V = static_cast<T const*>(p.v);
    int64_t const C = p.channels;
    int64_t const col0 = static_cast<int64_t>(head) * p.head_dim;
    int const vecs = p.head_dim / 8; // vectors of a row that hold data

    // 2. Q block and the first K/V tile into shared memory; rows past N, columns past dh = 0
    for (int i = tid; i < kMmaBlockQ * VPR; i += kMmaThreads)
    {
        int const r = i / VPR, c = i % VPR, t = q0 + r;
        T* const dst = sQ + r * LD + c * 8;
        if (t < N && c < vecs)
        {
            cp_async_16(dst, Q + sRow[t] * C + col0 + c * 8);
        }
        else
        {
            *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
        }
    }
    auto load_kv = [&](int tile, int stage) {
        T* const dk = sK + stage * kMmaBlockK * LD;
        T* const dv = sV + stage * kMmaBlockK * LD;
        for (int i = tid; i < kMmaBlockK * VPR; i += kMmaThreads)
        {
            int const r = i / VPR, c = i % VPR, t = tile * kMmaBlockK + r;
            if (t < N && c < vecs)
            {
                int64_t const off = sRow[t] * C + col0 + c * 8;
                cp_async_16(dk + r * LD + c * 8, K + off);
                cp_async_16(dv + r * LD + c * 8, V + off);
            }
            else
            {
                *reinterpret_cast<uint4*>(dk + r * LD + c * 8) = make_uint4(0, 0, 0, 0);
                *reinterpret_cast<uint4*>(dv + r * LD + c * 8) = make_uint4(0, 0, 0, 0);
            }
        }
    };
    int const n_tiles = n_pad / kMmaBlockK;
    load_kv(0, 0);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    // 3. this warp's 16 query rows as A fragments (row-major 16x16 per k step)
    int const wrow = warp * 16;
    uint32_t qf[KC][4];
#pragma unroll
    for (int kc = 0; kc < KC; ++kc)
    {
        ldmatrix_x4(qf[kc], smem_addr(sQ + (wrow + lane % 16) * LD + kc * 16 + (lane / 16) * 8));
    }

    // Accumulator layout: lane holds rows g (elements 0, 1) and g + 8 (elements 2, 3),
    // columns 2 * tig and 2 * tig + 1 of each 8-column tile.
    int const g = lane / 4;
    int const tig = lane % 4;
    int lab0 = 0, lab1 = 0; // region ids of the two query rows (-1: row past N)
    if constexpr (SHIFTED)
    {
        int const t0 = q0 + wrow + g;
        lab0 = t0 < N ? sLab[t0] : -1;
        lab1 = t0 + 8 < N ? sLab[t0 + 8] : -1;
    }
    float o[2 * KC][4];
#pragma unroll
    for (int dt = 0; dt < 2 * KC; ++dt)
    {
#pragma unroll
        for (int e = 0; e < 4; ++e)
        {
            o[dt][e] = 0.f;
        }
    }
    float m_run[2] = {-INFINITY, -INFINITY}; // running row max (base-2 scores)
    float l_run[2] = {0.f, 0.f};             // running row sum, this thread's columns only

    for (int tile = 0; tile < n_tiles; ++tile)
    {
        int const stage = tile & 1;
        if (tile + 1 < n_tiles)
        {
            load_kv(tile + 1, stage ^ 1); // overlaps with the math below
            cp_async_commit();
        }
        T const* const Ks = sK + stage * kMmaBlockK * LD;
        T const* const Vs = sV + stage * kMmaBlockK * LD;

        // 4. S = Q K^T for 64 keys; s[j] is the 16x8 tile of keys 8j .. 8j + 7
        float s[8][4];
#pragma unroll
        for (int j = 0; j < 8; ++j)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                s[j][e] = 0.f;
            }
        }
#pragma unroll
        for (int j2 = 0; j2 < 4; ++j2)
        {
#pragma unroll
            for (int kc = 0; kc < KC; ++kc)
            {
                // K rows are B columns: matrices (keys +0, dims +0), (+0, +8), (+8, +0), (+8, +8)
                uint32_t b[4];
                ldmatrix_x4(b,
                    smem_addr(Ks + (j2 * 16 + lane % 8 + (lane / 16) * 8) * LD + kc * 16 + ((lane / 8) % 2) * 8));
                mma_16816<T>(s[2 * j2], qf[kc], b[0], b[1]);
                mma_16816<T>(s[2 * j2 + 1], qf[kc], b[2], b[3]);
            }
        }

        // 5. online softmax, base 2: scale, region bias, keys past N out
        float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < 8; ++j)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                int const key = tile * kMmaBlockK + j * 8 + tig * 2 + (e & 1);
                float x = s[j][e] * p.scale_log2;
                if constexpr (SHIFTED)
                {
                    if (key < N && sLab[key] != (e < 2 ? lab0 : lab1))
                    {
                        x += kMaskBias * kLog2e;
                    }
                }
                x = key < N ? x : -INFINITY;
                s[j][e] = x;
                tile_max[e / 2] = fmaxf(tile_max[e / 2], x);
            }
        }
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            // the four lanes of a quad share a row
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
            float const m_new = fmaxf(m_run[r], tile_max[r]); // finite: every tile has a key < N
            alpha[r] = exp2f(m_run[r] - m_new);
            m_run[r] = m_new;
            l_run[r] *= alpha[r];
        }
#pragma unroll
        for (int j = 0; j < 8; ++j)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                float const pe = exp2f(s[j][e] - m_run[e / 2]);
                s[j][e] = pe;
                l_run[e / 2] += pe;
            }
        }
#pragma unroll
        for (int dt = 0; dt < 2 * KC; ++dt)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                o[dt][e] *= alpha[e / 2];
            }
        }

        // 6. O += P V; the S accumulators of keys 16kc .. 16kc + 15 are exactly the A fragment
#pragma unroll
        for (int kc = 0; kc < 4; ++kc)
        {
            uint32_t const a[4] = {
                pack2<T>(s[2 * kc][0], s[2 * kc][1]),
                pack2<T>(s[2 * kc][2], s[2 * kc][3]),
                pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3]),
            };
#pragma unroll
            for (int dp = 0; dp < KC; ++dp)
            {
                // V rows are B rows (k = key): transposed matrices (keys +0, dims +0), (+8, +0), (+0, +8), (+8, +8)
                uint32_t b[4];
                ldmatrix_x4_trans(b, smem_addr(Vs + (kc * 16 + lane % 16) * LD + dp * 16 + (lane / 16) * 8));
                mma_16816<T>(o[2 * dp], a, b[0], b[1]);
                mma_16816<T>(o[2 * dp + 1], a, b[2], b[3]);
            }
        }
        cp_async_wait_all(); // next tile landed ...
        __syncthreads();     // ... for everyone, and nobody reads this stage any more
    }

    // 7. normalise, stage this warp's rows in sQ (no longer read), store 16-byte vectors
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r)
    {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        inv[r] = 1.f / l;
    }
#pragma unroll
    for (int dt = 0; dt < 2 * KC; ++dt)
    {
        int const col = dt * 8 + tig * 2;
        *reinterpret_cast<uint32_t*>(sQ + (wrow + g) * LD + col) = pack2<T>(o[dt][0] * inv[0], o[dt][1] * inv[0]);
        *reinterpret_cast<uint32_t*>(sQ + (wrow + g + 8) * LD + col)
            = pack2<T>(o[dt][2] * inv[1], o[dt][3] * inv[1]);
    }
    __syncwarp();
    T* const Out = static_cast<T*>(p.out);
    for (int i = lane; i < 16 * vecs; i += 32)
    {
        int const r = i / vecs, c = i % vecs, t = q0 + wrow + r;
        if (t < N)
        {
            *reinterpret_cast<uint4*>(Out + sRow[t] * C + col0 + c * 8)
                = *reinterpret_cast<uint4 const*>(sQ + (wrow + r) * LD + c * 8);
        }
    }
}

// ------------------------------------------------------------------ fp32 CUDA-core kernel

constexpr int kF32Warps = 4;
constexpr int kF32Threads = 32 * kF32Warps;
constexpr int kF32RowsPerWarp = 8;
constexpr int kF32BlockQ = kF32Warps * kF32RowsPerWarp;
constexpr int kF32BlockK = 32; // one key per lane

inline size_t f32_smem_bytes(int head_dim, int tokens)
{
    size_t const ld = static_cast<size_t>(head_dim) + 1;
    size_t const n_pad = static_cast<size_t>(round_up(tokens, kF32BlockK));
    return (kF32BlockQ + 2 * kF32BlockK) * ld * sizeof(float) + n_pad * (sizeof(int32_t) + sizeof(uint8_t));
}

template <bool SHIFTED>
__global__ void __launch_bounds__(kF32Threads) attention_f32_kernel(AttentionParams const p)
{
    extern __shared__ __align__(16) unsigned char smem[];
    int const dh = p.head_dim;
    int const ld = dh + 1; // odd stride: lane j reading key j's row hits bank (j * ld + d) % 32, all distinct
    float* const sQ = reinterpret_cast<float*>(smem); // [BQ][ld]
    float* const sK = sQ + kF32BlockQ * ld;           // [BK][ld]
    float* const sV = sK + kF32BlockK * ld;           // [BK][ld]
    int const N = p.tokens;
    int32_t* const sRow = reinterpret_cast<int32_t*>(sV + kF32BlockK * ld);
    uint8_t* const sLab = reinterpret_cast<uint8_t*>(sRow + round_up(N, kF32BlockK));

    int64_t const win = blockIdx.x;
    int const head = blockIdx.y;
    int const q0 = blockIdx.z * kF32BlockQ;
    int const tid = threadIdx.x;
    int const warp = tid / 32;
    int const lane = tid % 32;

    if (!map_window_rows<SHIFTED>(p, win, sRow, sLab))
    {
        fill_nan<float>(p, win, head, q0, kF32BlockQ);
        return;
    }
    __syncthreads();

    float const* const Q = static_cast<float const*>(p.q);
    float const* const K = static_cast<float const*>(p.k);
    float const* const V = static_cast<float const*>(p.v);
    int64_t const C = p.channels;
    int64_t const col0 = static_cast<int64_t>(head) * dh;
    for (int i = tid; i < kF32BlockQ * dh; i += kF32Threads)
    {
        int const r = i / dh, d = i % dh, t = q0 + r;
        sQ[r * ld + d] = t < N ? Q[sRow[t] * C + col0 + d] : 0.f;
    }

    constexpr int kSlots = (kMaxHeadDim + 31) / 32; // output columns per lane: lane + 32 u
    float m_run[kF32RowsPerWarp], l_run[kF32RowsPerWarp], o[kF32RowsPerWarp][kSlots];
#pragma unroll
    for (int i = 0; i < kF32RowsPerWarp; ++i)
    {
        m_run[i] = -INFINITY;
        l_run[i] = 0.f;
#pragma unroll
        for (int u = 0; u < kSlots; ++u)
        {
            o[i][u] = 0.f;
        }
    }

    for (int k0 = 0; k0 < N; k0 += kF32BlockK)
    {
        __syncthreads(); // sQ written; the previous tile no longer read
        for (int i = tid; i < kF32BlockK * dh; i += kF32Threads)
        {
            int const r = i / dh, d = i % dh, t = k0 + r;
            int64_t const off = t < N ? sRow[t] * C + col0 + d : 0;
            sK[r * ld + d] = t < N ? K[off] : 0.f;
            sV[r * ld + d] = t < N ? V[off] : 0.f;
        }
        __syncthreads();
        int const key = k0 + lane;
#pragma unroll
        for (int i = 0; i < kF32RowsPerWarp; ++i)
        {
            int const r = warp * kF32RowsPerWarp + i;
            int const t = q0 + r;
            float x = 0.f;
            for (int d = 0; d < dh; ++d)
            {
                x = fmaf(sQ[r * ld + d], sK[lane * ld + d], x);
            }
            x *= p.scale_log2;
            if constexpr (SHIFTED)
            {
                if (key < N && t < N && sLab[key] != sLab[t])
                {
                    x += kMaskBias * kLog2e;
                }
            }
            x = key < N ? x : -INFINITY;
            float mx = x;
#pragma unroll
            for (int off = 16; off > 0; off /= 2)
            {
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            }
            float const m_new = fmaxf(m_run[i], mx);
            float const alpha = exp2f(m_run[i] - m_new);
            float const pe = exp2f(x - m_new);
            float sum = pe;
#pragma unroll
            for (int off = 16; off > 0; off /= 2)
            {
                sum += __shfl_xor_sync(0xffffffffu, sum, off);
            }
            m_run[i] = m_new;
            l_run[i] = l_run[i] * alpha + sum;
#pragma unroll
            for (int u = 0; u < kSlots; ++u)
            {
                o[i][u] *= alpha;
            }
            for (int j = 0; j < kF32BlockK; ++j)
            {
                float const pj = __shfl_sync(0xffffffffu, pe, j);
#pragma unroll
                for (int u = 0; u < kSlots; ++u)
                {
                    int const d = lane + 32 * u;
                    if (d < dh)
                    {
                        o[i][u] = fmaf(pj, sV[j * ld + d], o[i][u]);
                    }
                }
            }
        }
    }

    float* const Out = static_cast<float*>(p.out);
#pragma unroll
    for (int i = 0; i < kF32RowsPerWarp; ++i)
    {
        int const t = q0 + warp * kF32RowsPerWarp + i;
        if (t < N)
        {
#pragma unroll
            for (int u = 0; u < kSlots; ++u)
            {
                int const d = lane + 32 * u;
                if (d < dh)
                {
                    Out[sRow[t] * C + col0 + d] = o[i][u] / l_run[i];
                }
            }
        }
    }
}

// ------------------------------------------------------------------ host side

// Opt in to more than 48 KiB of dynamic shared memory, once per device.
template <typename Kernel>
int32_t opt_in_smem(Kernel kernel, size_t bytes, std::atomic<uint64_t>& done_devices, char const* what)
{
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess)
    {
        return check_launch(what);
    }
    int max_bytes = 0;
    cudaDeviceGetAttribute(&max_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (bytes > static_cast<size_t>(max_bytes))
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "%s needs %zu bytes of shared memory per block but the device allows %d: use fewer tokens per "
            "window or a smaller head_dim",
            what, bytes, max_bytes);
    }
    uint64_t const bit = device < 64 ? uint64_t{1} << device : 0;
    if (bytes > 48 * 1024 && (bit == 0 || !(done_devices.load() & bit)))
    {
        if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_bytes) != cudaSuccess)
        {
            return check_launch(what);
        }
        done_devices.fetch_or(bit);
    }
    return PTDIT_OK;
}

template <typename T, int DHP, bool SHIFTED>
int32_t launch_mma(AttentionParams const& p, int32_t heads, cudaStream_t stream, char const* what)
{
    static std::atomic<uint64_t> configured{0};
    auto kernel = attention_mma_kernel<T, DHP, SHIFTED>;
    size_t const bytes = mma_smem_bytes(DHP, p.tokens);
    int32_t const rc = opt_in_smem(kernel, bytes, configured, what);
    if (rc != PTDIT_OK)
    {
        return rc;
    }
    dim3 const grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(heads),
        static_cast<unsigned>((p.tokens + kMmaBlockQ - 1) / kMmaBlockQ));
    kernel<<<grid, kMmaThreads, bytes, stream>>>(p);
    return check_launch(what);
}

template <typename T, bool SHIFTED>
int32_t launch_mma_dispatch(AttentionParams const& p, int32_t heads, cudaStream_t stream, char const* what)
{
    switch (padded_head_dim(p.head_dim))
    {
    case 32: return launch_mma<T, 32, SHIFTED>(p, heads, stream, what);
    case 64: return launch_mma<T, 64, SHIFTED>(p, heads, stream, what);
    case 80: return launch_mma<T, 80, SHIFTED>(p, heads, stream, what);
    case 96: return launch_mma<T, 96, SHIFTED>(p, heads, stream, what);
    default: return launch_mma<T, 128, SHIFTED>(p, heads, stream, what);
    }
}

template <bool SHIFTED>
int32_t launch_f32(AttentionParams const& p, int32_t heads, cudaStream_t stream, char const* what)
{
    static std::atomic<uint64_t> configured{0};
    auto kernel = attention_f32_kernel<SHIFTED>;
    size_t const bytes = f32_smem_bytes(p.head_dim, p.tokens);
    int32_t const rc = opt_in_smem(kernel, bytes, configured, what);
    if (rc != PTDIT_OK)
    {
        return rc;
    }
    dim3 const grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(heads),
        static_cast<unsigned>((p.tokens + kF32BlockQ - 1) / kF32BlockQ));
    kernel<<<grid, kF32Threads, bytes, stream>>>(p);
    return check_launch(what);
}

// Validate, fill AttentionParams, launch. `grid` and `window` only matter when SHIFTED.
template <bool SHIFTED>
int32_t run_attention(char const* what, void const* q, void const* k, void const* v, void* out,
    int32_t const* grid, int32_t dtype, int64_t rows, int32_t tokens, int32_t num_heads, int32_t head_dim,
    float scale, int32_t const* window, cudaStream_t stream)
{
    clear_error();
    if (dtype != PTDIT_FLOAT32 && dtype != PTDIT_FLOAT16 && dtype != PTDIT_BFLOAT16)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT, "%s: dtype %d is not float32 (0), float16 (1) or bfloat16 (2)",
            what, dtype);
    }
    if (head_dim < 8 || head_dim > kMaxHeadDim || head_dim % 8 != 0)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "%s: head_dim %d is not supported: use a multiple of 8 from 8 to %d (e.g. 64, 72, 128)", what,
            head_dim, kMaxHeadDim);
    }
    if (num_heads < 1 || num_heads > 65535)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT, "%s: num_heads %d is outside 1..65535", what, num_heads);
    }
    if (tokens < 1 || tokens > kMaxTokens)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "%s: %d tokens per window is not supported: windows of 1 to %d tokens (wf*wh*ww)", what, tokens,
            kMaxTokens);
    }
    if (rows < 0 || rows * tokens > INT32_MAX)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "%s: %lld windows of %d tokens: rows * tokens must lie in 0 .. 2^31 - 1 (split the batch)", what,
            static_cast<long long>(rows), tokens);
    }
    if (SHIFTED)
    {
        if (window == nullptr || window[0] < 1 || window[1] < 1 || window[2] < 1
            || static_cast<int64_t>(window[0]) * window[1] * window[2] != tokens)
        {
            return fail(PTDIT_ERROR_INVALID_ARGUMENT,
                "%s: window must be three positive sizes whose product is the %d tokens per window", what, tokens);
        }
    }
    if (rows == 0)
    {
        return PTDIT_OK; // an empty batch: nothing to read (its tensors may well be null)
    }
    if (SHIFTED && grid == nullptr)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT, "%s: grid is null (pass a device int32[3] (F, h, w))", what);
    }
    if (q == nullptr || k == nullptr || v == nullptr || out == nullptr)
    {
        return fail(PTDIT_ERROR_INVALID_ARGUMENT, "%s: a tensor pointer is null", what);
    }
    if (dtype != PTDIT_FLOAT32 && !(aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out)))
    {
        return fail(PTDIT_ERROR_MISALIGNED,
            "%s: q, k, v and out must be 16-byte aligned (pass contiguous tensors that start an allocation)",
            what);
    }
    if (!(scale > 0.f))
    {
        scale = 1.f / std::sqrt(static_cast<float>(head_dim));
    }

    AttentionParams p{};
    p.q = q;
    p.k = k;
    p.v = v;
    p.out = out;
    p.grid = grid;
    p.rows = rows;
    p.tokens = tokens;
    p.head_dim = head_dim;
    p.channels = static_cast<int64_t>(num_heads) * head_dim;
    p.scale_log2 = scale * kLog2e;
    if (SHIFTED)
    {
        p.window[0] = window[0];
        p.window[1] = window[1];
        p.window[2] = window[2];
    }
    switch (dtype)
    {
    case PTDIT_FLOAT16: return launch_mma_dispatch<__half, SHIFTED>(p, num_heads, stream, what);
    case PTDIT_BFLOAT16: return launch_mma_dispatch<__nv_bfloat16, SHIFTED>(p, num_heads, stream, what);
    default: return launch_f32<SHIFTED>(p, num_heads, stream, what);
    }
}

} // namespace ptdit
