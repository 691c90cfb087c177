"""The one attention seam: every attention in PT-DiT calls `attend`, proxies come from `pool`.

A backend is registered by name and `use_backend` swaps one in for a block of code (fused
kernels, exported custom ONNX nodes) without touching the model. Each call says which of
PT-DiT's five attentions it is (`kind`) and, for the window kinds, the token grid and window
(`geometry`). A backend that `fuses_shift` receives shifted-window q/k/v unshifted and does
the roll, region mask and roll back itself; otherwise the block rolls and passes the mask.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ptdit_export.model.linear import Linear

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
