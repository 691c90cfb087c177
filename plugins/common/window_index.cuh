// Index arithmetic of PT-DiT's token layout, shared by the CUDA kernels and the host helpers
// (ptdit_shifted_window_index_map, ptdit_proxy_pool_members) that the CPU tests check against
// ptdit_export/model/layout.py. Plain C++ when not compiled by nvcc.
//
// Layout: a sample's token grid (F, H, W) is cut into windows (wf, wh, ww); rows are
// window-major, windows ordered (frame, row, column) and tokens inside a window likewise.
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define PTDIT_HD __host__ __device__ __forceinline__
#else
#define PTDIT_HD inline
#endif

namespace ptdit
{

// Swin region of position p on an axis of length len cut into windows of win: the slices
// [0:-win], [-win:-s], [-s:] (s = win/2) get 0, 1, 2. With s = 0 the axis is one region.
PTDIT_HD int32_t region_label(int32_t p, int32_t len, int32_t win)
{
    int32_t const s = win / 2;
    if (s == 0)
    {
        return 0;
    }
    return static_cast<int32_t>(p >= len - win) + static_cast<int32_t>(p >= len - s);
}

// One sample's grid and window, with the derived window counts.
struct ShiftGeometry
{
    int32_t F, H, W;          // token grid
    int32_t wf, wh, ww;       // window
    int32_t nf, nh, nw;       // windows per axis
    int32_t windows;          // windows per sample (>= 1 when valid)
    int32_t tokens;           // tokens per window
    bool valid;               // every axis positive and divisible by its window, windows < 2^31
};

PTDIT_HD ShiftGeometry make_shift_geometry(
    int32_t F, int32_t H, int32_t W, int32_t wf, int32_t wh, int32_t ww)
{
    ShiftGeometry g{};
    g.F = F;
    g.H = H;
    g.W = W;
    g.wf = wf;
    g.wh = wh;
    g.ww = ww;
    g.valid = F > 0 && H > 0 && W > 0 && wf > 0 && wh > 0 && ww > 0 && F % wf == 0 && H % wh == 0
        && W % ww == 0;
    if (g.valid)
    {
        g.nf = F / wf;
        g.nh = H / wh;
        g.nw = W / ww;
        // The grid is data read on the device: its window count must not wrap around in 32 bits
        // (a product of 2^32 would read as 0 windows, a division by zero downstream).
        int64_t const windows = static_cast<int64_t>(g.nf) * g.nh * g.nw; // each factor < 2^31: no 64-bit overflow
        int64_t const tokens = static_cast<int64_t>(wf) * wh * ww;
        g.valid = windows <= INT32_MAX && tokens <= INT32_MAX;
        g.windows = g.valid ? static_cast<int32_t>(windows) : 0;
        g.tokens = g.valid ? static_cast<int32_t>(tokens) : 0;
    }
    return g;
}

// Does a grid fit a batch of `rows` windows of `tokens` tokens? 0 if so, else why not:
// 1 grid not divisible by the window (or not positive, or over 2^31 - 1 windows),
// 2 the window holds another number of tokens, 3 rows is not a multiple of the windows per sample.
PTDIT_HD int32_t shift_grid_mismatch(ShiftGeometry const& g, int64_t rows, int32_t tokens)
{
    if (!g.valid)
    {
        return 1;
    }
    if (g.tokens != tokens)
    {
        return 2;
    }
    return rows % g.windows == 0 ? 0 : 3; // g.windows >= 1 here
}

// Token t of shifted window `win` (both sample-local) sits at position p' of the grid rolled by
// -s per axis (s = window // 2), i.e. at p = (p' + s) mod len of the unshifted grid. Returns
// that position's unshifted row (window * tokens + token) and writes p''s region id (0..26).
// Rolling back the attention output is the same map read in the other direction.
PTDIT_HD int32_t shifted_source_row(ShiftGeometry const& g, int32_t win, int32_t t, int32_t* region)
{
    int32_t const iw = win % g.nw;
    int32_t const ih = (win / g.nw) % g.nh;
    int32_t const jf = win / (g.nw * g.nh);
    int32_t const c = t % g.ww;
    int32_t const b = (t / g.ww) % g.wh;
    int32_t const a = t / (g.ww * g.wh);
    // position in the rolled grid
    int32_t const fr = jf * g.wf + a;
    int32_t const yr = ih * g.wh + b;
    int32_t const xr = iw * g.ww + c;
    *region = region_label(fr, g.F, g.wf) * 9 + region_label(yr, g.H, g.wh) * 3 + region_label(xr, g.W, g.ww);
    // torch.roll(x, -s)[p'] = x[(p' + s) mod len]; p' + s < 2 len
    int32_t f = fr + g.wf / 2;
    int32_t y = yr + g.wh / 2;
    int32_t x = xr + g.ww / 2;
    f = f >= g.F ? f - g.F : f;
    y = y >= g.H ? y - g.H : y;
    x = x >= g.W ? x - g.W : x;
    int32_t const src_window = ((f / g.wf) * g.nh + y / g.wh) * g.nw + x / g.ww;
    int32_t const src_token = ((f % g.wf) * g.wh + y % g.wh) * g.ww + x % g.ww;
    return src_window * g.tokens + src_token;
}

// Token (inside its window) of member m of proxy s, strided grouping: proxy s = a*gw + b takes
// the tokens whose row = a mod gh and column = b mod gw, members ordered (frame, row, column).
PTDIT_HD int32_t proxy_member_token(int32_t m, int32_t s, int32_t wh, int32_t ww, int32_t gh, int32_t gw)
{
    int32_t const a = s / gw;
    int32_t const b = s % gw;
    int32_t const per_row = ww / gw;
    int32_t const per_frame = (wh / gh) * per_row;
    int32_t const f = m / per_frame;
    int32_t const i = (m % per_frame) / per_row;
    int32_t const j = m % per_row;
    return (f * wh + i * gh + a) * ww + j * gw + b;
}

} // namespace ptdit
