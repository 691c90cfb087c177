"""The one attention seam: every attention in PT-DiT calls `attend`.

Backends are plain functions registered by name; `use_backend` swaps one in for a block of
code (fused kernels, exported custom ONNX nodes) without touching the model. Each call also
says which of PT-DiT's five attentions it is (`kind`), so a backend can treat window
attention differently from the global ones.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ptdit_export.model.linear import Linear

# The five attentions of a PT-DiT block.
KINDS = ("proxy", "proxy_cross", "window", "shifted_window", "text")

Backend = Callable[..., torch.Tensor]
_BACKENDS: dict[str, Backend] = {}
_active = ["sdpa"]


def register_backend(name: str) -> Callable[[Backend], Backend]:
    def wrap(fn: Backend) -> Backend:
        _BACKENDS[name] = fn
        return fn

    return wrap


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
def sdpa_attention(q, k, v, heads, bias=None, kind="window"):
    """torch's scaled_dot_product_attention, as the release's default processor uses."""
    out = torch.nn.functional.scaled_dot_product_attention(
        _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads), attn_mask=bias
    )
    return _merge_heads(out)


@register_backend("math")
def math_attention(q, k, v, heads, bias=None, kind="window"):
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
) -> torch.Tensor:
    """Multi-head attention. q [B, Nq, H*dh], k/v [B, Nk, H*dh], bias broadcastable to
    [B, H, Nq, Nk] (added to the scores) -> [B, Nq, H*dh]."""
    return _BACKENDS[_active[-1]](q, k, v, heads, bias=bias, kind=kind)


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
        self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        dtype = self.to_q.weight.dtype
        x = x.to(dtype)
        ctx = x if context is None else context.to(dtype)
        out = attend(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads, bias, self.kind)
        return self.to_out[0](out)
