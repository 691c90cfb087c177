// PTDiTWindowAttention: softmax attention inside each window (C API entry point).
#include "ptdit_kernels.h"
#include "window_attention/attention_kernels.cuh"

extern "C" PTDIT_API int32_t ptdit_window_attention(void const* q, void const* k, void const* v, void* out,
    int32_t dtype, int64_t rows, int32_t tokens, int32_t num_heads, int32_t head_dim, float scale,
    cudaStream_t stream)
{
    return ptdit::run_attention<false>("ptdit_window_attention", q, k, v, out, nullptr, dtype, rows, tokens,
        num_heads, head_dim, scale, nullptr, stream);
}
