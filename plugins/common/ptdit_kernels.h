/*
 * C API of libptdit_kernels.so: PT-DiT's custom ops as CUDA kernels (no TensorRT needed).
 *
 * Every op function takes raw device pointers in the window-major layout of
 * ptdit_export/model/layout.py ([R, N, C]: R = batch * windows, N = wf*wh*ww tokens ordered
 * frame, row, column), launches on `stream` and returns PTDIT_OK or an error code; the
 * message of the last error on the calling thread is ptdit_last_error(). Nothing here
 * synchronises the stream.
 *
 * Tensors must be contiguous, and 16-byte aligned for the attention kernels (any tensor from
 * the PyTorch caching allocator or TensorRT is).
 */
#ifndef PTDIT_KERNELS_H
#define PTDIT_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#define PTDIT_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

/* Element type of the floating-point tensors of one call (all the same). */
typedef enum ptdit_dtype
{
    PTDIT_FLOAT32 = 0,
    PTDIT_FLOAT16 = 1,
    PTDIT_BFLOAT16 = 2
} ptdit_dtype;

typedef enum ptdit_status
{
    PTDIT_OK = 0,
    PTDIT_ERROR_INVALID_ARGUMENT = 1, /* unsupported size, dtype or attribute; see ptdit_last_error() */
    PTDIT_ERROR_MISALIGNED = 2,       /* a pointer or row is not 16-byte aligned */
    PTDIT_ERROR_CUDA = 3              /* the launch failed; the CUDA error is in the message */
} ptdit_status;

/* Version of this C API; bumped on any signature change. */
#define PTDIT_KERNELS_ABI_VERSION 1
PTDIT_API int32_t ptdit_abi_version(void);

/* Message of the last failed call on this thread ("" if none). */
PTDIT_API char const* ptdit_last_error(void);

/*
 * PTDiTProxyPool: x [rows, tokens, channels] -> out [rows, groups[1]*groups[2], channels].
 * Proxy s = a*groups[2] + b averages (fp32 sum, then / count) the window's tokens whose row is
 * a mod groups[1] and column b mod groups[2], over all frames. tokens must equal
 * window[0]*window[1]*window[2]; groups[0] must be 1; groups[1], groups[2] must divide
 * window[1], window[2].
 */
PTDIT_API int32_t ptdit_proxy_pool(void const* x, void* out, int32_t dtype, int64_t rows, int32_t tokens,
    int32_t channels, int32_t const window[3], int32_t const groups[3], cudaStream_t stream);

/*
 * PTDiTWindowAttention: q, k, v, out [rows, tokens, num_heads*head_dim];
 * out = softmax(q k^T * scale) v per window and head, fp32 accumulation; scale <= 0 means
 * 1/sqrt(head_dim). Supported: head_dim a multiple of 8 up to 128 (fp16/bf16 run on tensor
 * cores, sm_80+), tokens 1..1024, rows * tokens < 2^31.
 */
PTDIT_API int32_t ptdit_window_attention(void const* q, void const* k, void const* v, void* out, int32_t dtype,
    int64_t rows, int32_t tokens, int32_t num_heads, int32_t head_dim, float scale, cudaStream_t stream);

/*
 * PTDiTShiftedWindowAttention: as ptdit_window_attention, with q, k, v, out in the UNshifted
 * window-major layout of a token grid `grid` = (F, h, w) per sample (a DEVICE pointer to three
 * int32, read by the kernel). Attention runs in the windows of the grid rolled by
 * -(window//2) per axis, with score bias -10000 between tokens of different Swin regions;
 * results land back in the unshifted layout. No copies: the roll is index arithmetic.
 * If the grid does not match (not divisible by the window, or rows not a multiple of the
 * windows per sample) the kernel writes NaN to `out`: a caller that can read the grid on the
 * host checks it first with ptdit_check_shifted_grid (the TensorRT plugin does). rows == 0
 * returns PTDIT_OK without reading any pointer.
 */
PTDIT_API int32_t ptdit_shifted_window_attention(void const* q, void const* k, void const* v, void* out,
    int32_t const* grid, int32_t dtype, int64_t rows, int32_t tokens, int32_t num_heads, int32_t head_dim,
    float scale, int32_t const window[3], cudaStream_t stream);

/*
 * Does a HOST grid (F, h, w) fit a batch of `rows` windows of `tokens` tokens cut by `window`?
 * PTDIT_OK, or PTDIT_ERROR_INVALID_ARGUMENT with the reason in ptdit_last_error(). The same test
 * the shifted kernel makes on the device (window counts in 64 bits, so no grid wraps around).
 */
PTDIT_API int32_t ptdit_check_shifted_grid(
    int32_t const grid[3], int32_t const window[3], int64_t rows, int32_t tokens);

/*
 * Host-side views of the index arithmetic the kernels run (the very same inline functions),
 * for tests and debugging. For one sample of grid (F, h, w):
 *   source[w' * N + t] = unshifted row (window * N + token) that token t of shifted window w' reads
 *   region[w' * N + t] = Swin region id of that token (equal ids attend without bias)
 * Arrays hold windows*N entries, windows = (F/wf)*(h/wh)*(w/ww).
 */
PTDIT_API int32_t ptdit_shifted_window_index_map(
    int32_t const grid[3], int32_t const window[3], int32_t* source, int32_t* region);

/* members[s * M + m] = token of member m of proxy s; M = window[0]*(window[1]/groups[1])*(window[2]/groups[2]). */
PTDIT_API int32_t ptdit_proxy_pool_members(int32_t const window[3], int32_t const groups[3], int32_t* members);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PTDIT_KERNELS_H */
