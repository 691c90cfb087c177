"""Token layout of PT-DiT: windows, shifted windows, proxy pooling, the Swin region mask.

Tokens live window-major: [(B * nW), N, C] with windows ordered (frame-window, row-window,
column-window) and the N = wf*wh*ww tokens inside a window ordered (frame, row, column).
Every size here is read from the tensors, so traced graphs keep them dynamic; only the
window sizes (config constants) are Python ints.
"""

from __future__ import annotations

import torch

Window = tuple[int, int, int]

# Score bias between tokens that must not see each other (official value, not -inf).
MASK_VALUE = -10000.0


def grid_to_windows(x: torch.Tensor, window: Window) -> torch.Tensor:
    """[B, F, h, w, C] -> [(B nW), N, C]."""
    b, f, h, w, c = x.shape
    wf, wh, ww = window
    x = x.reshape(b, f // wf, wf, h // wh, wh, w // ww, ww, c)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)  # (B, nf, nh, nw, wf, wh, ww, C)
    return x.reshape(-1, wf * wh * ww, c)


def windows_to_grid(x: torch.Tensor, grid: tuple, window: Window) -> torch.Tensor:
    """[(B nW), N, C] -> [B, F, h, w, C]; `grid` is (F, h, w) in tokens."""
    f, h, w = grid
    wf, wh, ww = window
    c = x.shape[-1]
    x = x.reshape(-1, f // wf, h // wh, w // ww, wf, wh, ww, c)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)  # (B, nf, wf, nh, wh, nw, ww, C)
    return x.reshape(-1, f, h, w, c)


def shift_windows(x: torch.Tensor, grid: tuple, window: Window, inverse: bool = False) -> torch.Tensor:
    """Roll the token grid by -window//2 per axis (or back, with `inverse`) and re-window."""
    sign = 1 if inverse else -1
    shifts = tuple(sign * (s // 2) for s in window)
    if not any(shifts):
        return x
    g = windows_to_grid(x, grid, window)
    g = torch.roll(g, shifts=shifts, dims=(1, 2, 3))
    return grid_to_windows(g, window)


def proxy_pool(x: torch.Tensor, window: Window, groups: Window) -> torch.Tensor:
    """Average each window into its proxy tokens: [(B nW), N, C] -> [(B nW), S, C].

    S = gh*gw proxies per window. Proxy (y, z) averages the window's tokens whose row is
    congruent to y mod gh and column to z mod gw (strided grouping, as the release does);
    time is always averaged over the whole temporal window. With groups (1,1,1) this is the
    plain window mean.
    """
    wf, wh, ww = window
    _, gh, gw = groups
    r, _, c = x.shape
    x = x.reshape(r, wf, wh // gh, gh, ww // gw, gw, c).permute(0, 1, 2, 4, 3, 5, 6)
    # one flat mean over the group members, summed in the release's order (matters in bf16)
    return x.reshape(r, -1, gh * gw, c).mean(dim=1)  # (R, S, C)


def _region_labels(length: int | torch.Tensor, win: int, device: torch.device) -> torch.Tensor:
    """Region id of each position along one axis: slices [0:-w], [-w:-s], [-s:] get 0, 1, 2.

    A slice assigned later wins, so with s = 0 the last slice ([-0:] = everything) labels the
    whole axis 2 and the axis splits no windows, as in the release.
    """
    pos = torch.arange(length, device=device)
    s = win // 2
    if s == 0:
        return torch.full_like(pos, 2)
    return (pos >= length - win).long() + (pos >= length - s).long()


def shift_region_bias(grid: tuple, window: Window, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive score bias [nW, N, N] for shifted-window attention: MASK_VALUE across regions."""
    f, h, w = grid
    lf = _region_labels(f, window[0], device)
    lh = _region_labels(h, window[1], device)
    lw = _region_labels(w, window[2], device)
    labels = lf[:, None, None] * 9 + lh[None, :, None] * 3 + lw[None, None, :]  # (F, h, w)
    labels = grid_to_windows(labels[None, ..., None], window)[..., 0]  # (nW, N)
    differs = labels[:, None, :] != labels[:, :, None]  # (nW, N, N)
    return differs.to(dtype) * MASK_VALUE  # rounded in the working dtype, as the release does


def padding_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Caption mask [B, L] (1 keep, 0 pad) or an additive bias [B, 1, L] -> score bias [B, 1, 1, L]."""
    if mask is None:
        return None
    if mask.ndim == 2:
        bias = (1 - mask.to(dtype)) * MASK_VALUE
    else:
        bias = mask.to(dtype).reshape(mask.shape[0], -1)
    return bias[:, None, None, :]
