"""The one attention seam: every attention in PT-DiT calls `attend`, proxies come from `pool`.

A backend is registered by name and `use_backend` swaps one in for a block of code (fused
kernels, exported custom ONNX nodes) without touching the model. Each call says which of
PT-DiT's five attentions it is (`kind`) and, for the window kinds, the token grid and window
(`geometry`). A backend that `fuses_shift` receives shifted-window q/k/v unshifted and does
the roll, region mask and roll back itself; otherwise the block rolls and passes the mask.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ptdit_export.model.linear import Linear

log = logging.getLogger(__name__)

# The five attentions of a PT-DiT block, and the dense baseline's global self-attention.
KINDS = ("proxy", "proxy_cross", "window", "shifted_window", "text", "global")


@dataclass(frozen=True)
class Backend:
    attend: Callable[..., torch.Tensor]  # (q, k, v, heads, bias, kind, geometry) -> out
    pool: Callable[..., torch.Tensor] | None = None  # (x, window, groups) -> proxies
    fuses_shift: bool = False  # shifted_window gets unshifted q/k/v and rolls itself


_BACKENDS: dict[str, Backend] = {}
_active = ["sdpa"]


def register_backend(name: str, **options) -> Callable:
    """Decorator: register an attention function (plus Backend options) under `name`."""

    def wrap(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        _BACKENDS[name] = Backend(fn, **options)
        return fn

    return wrap


def active() -> Backend:
    return _BACKENDS[_active[-1]]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the enclosed code with attention backend `name`."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; registered: {sorted(_BACKENDS)}")
    _active.append(name)
    try:
        yield
    finally:
        _active.pop()


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.reshape(b, n, heads, d // heads).transpose(1, 2)  # (B, heads, N, dh)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


@register_backend("sdpa")
def sdpa_attention(q, k, v, heads, bias=None, kind="window", geometry=None):
    """torch's scaled_dot_product_attention, as the release's default processor uses."""
    out = torch.nn.functional.scaled_dot_product_attention(
        _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads), attn_mask=bias
    )
    return _merge_heads(out)


@register_backend("math")
def math_attention(q, k, v, heads, bias=None, kind="window", geometry=None):
    """softmax(q k^T / sqrt(dh) + bias) v written out, softmax in fp32; exports to plain ONNX ops."""
    q, k, v = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * (1.0 / math.sqrt(q.shape[-1]))
    if bias is not None:
        scores = scores + bias
    return _merge_heads(torch.matmul(scores.softmax(dim=-1).to(v.dtype), v))


def fused_pool(x: torch.Tensor, window: tuple, groups: tuple) -> torch.Tensor:
    """Proxy pooling by the CUDA kernel (groups[0] must be 1, as PT-DiT's always are)."""
    from ptdit_export import kernels
    from ptdit_export.model import layout

    if groups[0] == 1 and x.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return kernels.proxy_pool(x, window, groups)
    return layout.proxy_pool(x, window, groups)


@register_backend("fused", pool=fused_pool, fuses_shift=True)
def fused_attention(q, k, v, heads, bias=None, kind="window", geometry=None):
    """The CUDA kernels of `ptdit_export.kernels` for window and shifted-window attention (the
    shifted kernel rolls, masks and rolls back by index arithmetic); SDPA for the other kinds
    and for sizes the kernels do not take (said once per size)."""
    from ptdit_export import kernels

    if kind in ("window", "shifted_window"):
        grid, window = geometry
        reason = kernels.unsupported(q, heads)
        if reason is None:
            if kind == "window":
                return kernels.window_attention(q, k, v, heads)
            return kernels.shifted_window_attention(q, k, v, grid, heads, window)
        _say_once(f"fused {kind} attention falls back to SDPA: {reason}")
        if kind == "shifted_window":
            return sdpa_shifted_attention(q, k, v, heads, grid, window)
    return sdpa_attention(q, k, v, heads, bias=bias)


def sdpa_shifted_attention(q, k, v, heads, grid, window):
    """Shifted-window attention on unshifted q/k/v with SDPA: roll, region mask, roll back."""
    from ptdit_export.model import layout

    q, k, v = (layout.shift_windows(t, grid, window) for t in (q, k, v))
    bias = layout.shift_region_bias(grid, window, q.dtype, q.device)  # (nW, N, N)
    bias = bias.repeat(q.shape[0] // bias.shape[0], 1, 1)[:, None]  # (R, 1, N, N)
    return layout.shift_windows(sdpa_attention(q, k, v, heads, bias=bias), grid, window, inverse=True)


_said: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.warning(message)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    bias: torch.Tensor | None = None,
    kind: str = "window",
    geometry: tuple | None = None,
) -> torch.Tensor:
    """Multi-head attention. q [B, Nq, H*dh], k/v [B, Nk, H*dh], bias broadcastable to
    [B, H, Nq, Nk] (added to the scores) -> [B, Nq, H*dh]. geometry: (grid, window)."""
    return active().attend(q, k, v, heads, bias=bias, kind=kind, geometry=geometry)


def pool(x: torch.Tensor, window: tuple, groups: tuple) -> torch.Tensor:
    """Proxy tokens of each window [(B nW), N, C] -> [(B nW), S, C] (see layout.proxy_pool)."""
    from ptdit_export.model import layout

    fn = active().pool or layout.proxy_pool
    return fn(x, window, groups)


class Attention(nn.Module):
    """Projections around `attend`; parameter names match the release (to_q, ..., to_out.0)."""

    def __init__(self, dim: int, heads: int, head_dim: int, bias: bool, kind: str):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"attention kind {kind!r} is not one of {KINDS}")
        inner = heads * head_dim
        self.heads, self.kind = heads, kind
        self.to_q = Linear(dim, inner, bias=bias)
        self.to_k = Linear(dim, inner, bias=bias)
        self.to_v = Linear(dim, inner, bias=bias)
        self.to_out = nn.ModuleList([Linear(inner, dim), nn.Dropout(0.0)])

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        geometry: tuple | None = None,
    ) -> torch.Tensor:
        dtype = self.to_q.weight.dtype
        x = x.to(dtype)
        ctx = x if context is None else context.to(dtype)
        out = attend(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads, bias, self.kind, geometry)
        return self.to_out[0](out)
