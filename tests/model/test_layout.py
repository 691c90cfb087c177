"""Window layout, proxy pooling and the region mask against independent formulations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ptdit_export.model import layout
from tests.model.dense_reference import region_labels_1d

WINDOWS = [(1, 2, 2), (1, 4, 4), (1, 3, 2), (2, 2, 4), (4, 2, 2)]


def grid_for(window, b=2):
    wf, wh, ww = window
    return torch.randn(b, 2 * wf, 3 * wh, 2 * ww, 5)


@pytest.mark.parametrize("window", WINDOWS)
def test_partition_round_trip_is_exact(window):
    g = grid_for(window)
    win = layout.grid_to_windows(g, window)
    assert win.shape == (g.shape[0] * 12, window[0] * window[1] * window[2], 5)
    assert torch.equal(layout.windows_to_grid(win, g.shape[1:4], window), g)


@pytest.mark.parametrize("window", WINDOWS)
def test_window_order_is_window_major_then_frame_row_col(window):
    g = grid_for(window, b=1)
    win = layout.grid_to_windows(g, window)
    wf, wh, ww = window
    nh, nw = g.shape[2] // wh, g.shape[3] // ww
    for idx in (0, 5, win.shape[0] - 1):
        fi, rem = divmod(idx, nh * nw)
        hi, wi = divmod(rem, nw)
        block = g[0, fi * wf : (fi + 1) * wf, hi * wh : (hi + 1) * wh, wi * ww : (wi + 1) * ww]
        assert torch.equal(win[idx], block.reshape(-1, 5))


@pytest.mark.parametrize("window", WINDOWS)
def test_shift_is_a_roll_of_the_grid(window):
    g = grid_for(window)
    grid = g.shape[1:4]
    win = layout.grid_to_windows(g, window)
    shifted = layout.shift_windows(win, grid, window)
    expect = torch.roll(g, shifts=tuple(-(s // 2) for s in window), dims=(1, 2, 3))
    assert torch.equal(layout.windows_to_grid(shifted, grid, window), expect)
    assert torch.equal(layout.shift_windows(shifted, grid, window, inverse=True), win)


@pytest.mark.parametrize("window", WINDOWS)
def test_proxy_pool_equals_avg_pool3d_when_proxy_window_is_the_window(window):
    g = grid_for(window)
    pooled = layout.proxy_pool(layout.grid_to_windows(g, window), window, (1, 1, 1))
    ref = F.avg_pool3d(g.permute(0, 4, 1, 2, 3), kernel_size=window)  # (B, C, nf, nh, nw)
    ref = ref.permute(0, 2, 3, 4, 1).reshape(-1, 1, 5)
    torch.testing.assert_close(pooled, ref, rtol=1e-6, atol=1e-6)


def test_proxy_pool_strided_groups():
    """Window (1,8,8), proxy window (1,4,4): 4 proxies, (y, z) averages rows y, y+2, y+4, y+6."""
    g = grid_for((1, 8, 8), b=1)
    win = layout.grid_to_windows(g, (1, 8, 8))
    pooled = layout.proxy_pool(win, (1, 8, 8), (1, 2, 2))
    assert pooled.shape == (win.shape[0], 4, 5)
    block = g[0, 0, 8:16, 0:8]  # frame 0, row-window 1, col-window 0
    idx = 1 * (g.shape[3] // 8)  # frame 0, row-window 1, col-window 0
    for y in range(2):
        for z in range(2):
            want = block[y::2, z::2].reshape(-1, 5).mean(0)
            torch.testing.assert_close(pooled[idx, y * 2 + z], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "window,grid", [((1, 4, 4), (1, 8, 12)), ((2, 2, 4), (4, 6, 8)), ((1, 3, 2), (1, 9, 4))]
)
def test_region_bias_matches_slice_labels(window, grid):
    bias = layout.shift_region_bias(grid, window, torch.float32, torch.device("cpu"))
    f, h, w = grid
    lf, lh, lw = (region_labels_1d(n, k) for n, k in zip(grid, window))
    labels = torch.tensor(
        [[[lf[a] * 9 + lh[b] * 3 + lw[c] for c in range(w)] for b in range(h)] for a in range(f)]
    )
    lab_win = layout.grid_to_windows(labels[None, ..., None], window)[..., 0]
    want = torch.where(lab_win[:, :, None] == lab_win[:, None, :], 0.0, -10000.0)
    assert torch.equal(bias, want)
    # only the last window along each shifted axis is split into regions
    assert (bias[0] == 0).all()
