// PTDiTShiftedWindowAttention: Swin-style shifted-window attention on the unshifted layout
// (C API entry point). The kernel is attention_mma_kernel / attention_f32_kernel with
// SHIFTED = true: each block gathers the tokens of one shifted window through
// ptdit::shifted_source_row (window_index.cuh), masks scores across Swin regions with -10000
// and scatters its output rows back to where it read them, so roll, re-windowing and roll back
// cost no memory traffic.
#include "ptdit_kernels.h"
#include "window_attention/attention_kernels.cuh"

extern "C" PTDIT_API int32_t ptdit_shifted_window_attention(void const* q, void const* k, void const* v, void* out,
    int32_t const* grid, int32_t dtype, int64_t rows, int32_t tokens, int32_t num_heads, int32_t head_dim,
    float scale, int32_t const window[3], cudaStream_t stream)
{
    return ptdit::run_attention<true>("ptdit_shifted_window_attention", q, k, v, out, grid, dtype, rows, tokens,
        num_heads, head_dim, scale, window, stream);
}
