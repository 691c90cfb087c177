"""Window and shifted-window attention against dense attention with explicit masks."""

from __future__ import annotations

import math

import pytest
import torch

from ptdit_export.model import layout
from ptdit_export.model.attention import attend, use_backend
from tests.model.dense_reference import region_labels_1d


def dense(q, k, v, heads, bias):
    n, d = q.shape
    dh = d // heads
    q, k, v = (t.double().reshape(n, heads, dh).transpose(0, 1) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / math.sqrt(dh) + bias.double()
    return (s.softmax(-1) @ v).transpose(0, 1).reshape(n, d)


def row_major(g):  # (F, h, w, C) -> (F*h*w, C)
    return g.reshape(-1, g.shape[-1])


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("window,grid", [((1, 4, 4), (1, 8, 12)), ((2, 2, 4), (4, 4, 8))])
def test_window_attention_is_block_diagonal_dense_attention(backend, window, grid):
    heads = 2
    g = [torch.randn(1, *grid, 8) for _ in range(3)]
    q, k, v = (layout.grid_to_windows(t, window) for t in g)
    with use_backend(backend):
        out = layout.windows_to_grid(attend(q, k, v, heads), grid, window)[0]
    f, h, w = grid
    wid = torch.tensor(
        [
            ((a // window[0]) * 100 + b // window[1]) * 100 + c // window[2]
            for a in range(f)
            for b in range(h)
            for c in range(w)
        ]
    )
    bias = torch.where(wid[:, None] == wid[None], 0.0, -math.inf)
    want = dense(*(row_major(t[0]) for t in g), heads, bias)
    torch.testing.assert_close(row_major(out).double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "window,grid", [((1, 4, 4), (1, 8, 12)), ((2, 2, 4), (4, 4, 8)), ((1, 3, 2), (1, 6, 4))]
)
def test_shifted_window_attention_is_dense_over_rolled_grid_with_region_mask(window, grid):
    heads = 2
    g = [torch.randn(1, *grid, 8) for _ in range(3)]
    q, k, v = (layout.shift_windows(layout.grid_to_windows(t, window), grid, window) for t in g)
    bias = layout.shift_region_bias(grid, window, torch.float32, q.device)[:, None]
    out = layout.shift_windows(attend(q, k, v, heads, bias), grid, window, inverse=True)
    out = layout.windows_to_grid(out, grid, window)[0]

    shifts = tuple(-(s // 2) for s in window)
    rolled = [torch.roll(t[0], shifts, dims=(0, 1, 2)) for t in g]
    f, h, w = grid
    lab = [region_labels_1d(n, s) for n, s in zip(grid, window)]
    pos = [(a, b, c) for a in range(f) for b in range(h) for c in range(w)]
    wid = torch.tensor([((a // window[0]) * 100 + b // window[1]) * 100 + c // window[2] for a, b, c in pos])
    reg = torch.tensor([lab[0][a] * 9 + lab[1][b] * 3 + lab[2][c] for a, b, c in pos])
    bias = torch.where(wid[:, None] == wid[None], 0.0, -math.inf) + torch.where(
        reg[:, None] == reg[None], 0.0, -10000.0
    )
    want = dense(*(row_major(t) for t in rolled), heads, bias).reshape(f, h, w, 8)
    want = torch.roll(want, tuple(-s for s in shifts), dims=(0, 1, 2))
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="registered"):
        with use_backend("nope"):
            pass
