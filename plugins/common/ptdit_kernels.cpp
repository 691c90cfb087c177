// Error state of the C API and the host views of the kernels' index arithmetic.
#include "kernel_common.h"
#include "ptdit_kernels.h"
#include "window_index.cuh"

#include <cstdarg>
#include <cstdio>
#include <string>

namespace ptdit
{
namespace
{
thread_local std::string t_last_error;
} // namespace

int32_t fail(int32_t code, char const* fmt, ...)
{
    char buf[1024];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    t_last_error = buf;
    return code;
}

void clear_error()
{
    t_last_error.clear();
}

int32_t check_launch(char const* what)
{
    cudaError_t const err = cudaGetLastError();
    if (err != cudaSuccess)
    {
        return fail(PTDIT_ERROR_CUDA, "%s: kernel launch failed: %s (%s)", what, cudaGetErrorName(err),
            cudaGetErrorString(err));
    }
    return PTDIT_OK;
}

} // namespace ptdit

extern "C" PTDIT_API int32_t ptdit_abi_version(void)
{
    return PTDIT_KERNELS_ABI_VERSION;
}

extern "C" PTDIT_API char const* ptdit_last_error(void)
{
    return ptdit::t_last_error.c_str();
}

extern "C" PTDIT_API int32_t ptdit_check_shifted_grid(
    int32_t const grid[3], int32_t const window[3], int64_t rows, int32_t tokens)
{
    ptdit::clear_error();
    if (grid == nullptr || window == nullptr)
    {
        return ptdit::fail(PTDIT_ERROR_INVALID_ARGUMENT, "grid and window must be int32[3]");
    }
    ptdit::ShiftGeometry const g
        = ptdit::make_shift_geometry(grid[0], grid[1], grid[2], window[0], window[1], window[2]);
    switch (ptdit::shift_grid_mismatch(g, rows, tokens))
    {
    case 0: return PTDIT_OK;
    case 1:
        return ptdit::fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "grid (%d, %d, %d) does not fit window (%d, %d, %d): every axis must be a positive multiple of its "
            "window, with fewer than 2^31 windows per sample",
            grid[0], grid[1], grid[2], window[0], window[1], window[2]);
    case 2:
        return ptdit::fail(PTDIT_ERROR_INVALID_ARGUMENT, "window (%d, %d, %d) does not hold the %d tokens per window",
            window[0], window[1], window[2], tokens);
    default:
        return ptdit::fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "grid (%d, %d, %d) has %d windows per sample, which do not divide the batch's %lld windows: the grid "
            "does not describe this tensor",
            grid[0], grid[1], grid[2], g.windows, static_cast<long long>(rows));
    }
}

extern "C" PTDIT_API int32_t ptdit_shifted_window_index_map(
    int32_t const grid[3], int32_t const window[3], int32_t* source, int32_t* region)
{
    ptdit::clear_error();
    ptdit::ShiftGeometry const g
        = ptdit::make_shift_geometry(grid[0], grid[1], grid[2], window[0], window[1], window[2]);
    if (!g.valid)
    {
        return ptdit::fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "grid (%d, %d, %d) is not divisible by window (%d, %d, %d)", grid[0], grid[1], grid[2], window[0],
            window[1], window[2]);
    }
    for (int32_t w = 0; w < g.windows; ++w)
    {
        for (int32_t t = 0; t < g.tokens; ++t)
        {
            int32_t label = 0;
            source[w * g.tokens + t] = ptdit::shifted_source_row(g, w, t, &label);
            region[w * g.tokens + t] = label;
        }
    }
    return PTDIT_OK;
}

extern "C" PTDIT_API int32_t ptdit_proxy_pool_members(
    int32_t const window[3], int32_t const groups[3], int32_t* members)
{
    ptdit::clear_error();
    int32_t const wf = window[0], wh = window[1], ww = window[2];
    int32_t const gh = groups[1], gw = groups[2];
    if (wf < 1 || wh < 1 || ww < 1 || groups[0] != 1 || gh < 1 || gw < 1 || wh % gh != 0 || ww % gw != 0)
    {
        return ptdit::fail(PTDIT_ERROR_INVALID_ARGUMENT,
            "window (%d, %d, %d) and groups (%d, %d, %d) do not fit: groups[0] must be 1 and groups[1], "
            "groups[2] must divide window[1], window[2]",
            wf, wh, ww, groups[0], gh, gw);
    }
    int32_t const count = wf * (wh / gh) * (ww / gw);
    for (int32_t s = 0; s < gh * gw; ++s)
    {
        for (int32_t m = 0; m < count; ++m)
        {
            members[s * count + m] = ptdit::proxy_member_token(m, s, wh, ww, gh, gw);
        }
    }
    return PTDIT_OK;
}
