"""The custom ops of PT-DiT: one description (ops.json) shared by the ONNX exporter and the
TensorRT plugins (CMake generates plugins' C++ names from the same file), plus a PyTorch
reference implementation of each op, registered by op name, for parity checks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from ptdit_export.model import layout

SPEC_PATH = Path(__file__).with_name("ops.json")


@dataclass(frozen=True)
class OpSpec:
    name: str
    version: str
    inputs: tuple[str, ...]
    attributes: dict[str, str]  # name -> "int" | "ints" | "float"
    doc: str


@cache
def load_spec() -> tuple[str, dict[str, OpSpec]]:
    """(ONNX domain, {op name: spec}) from ops.json."""
    raw = json.loads(SPEC_PATH.read_text())
    ops = {
        o["name"]: OpSpec(
            name=o["name"],
            version=o["version"],
            inputs=tuple(i["name"] for i in o["inputs"]),
            attributes={a["name"]: a["type"] for a in o["attributes"]},
            doc=o["doc"],
        )
        for o in raw["ops"]
    }
    return raw["domain"], ops


DOMAIN = load_spec()[0]
PROXY_POOL, WINDOW_ATTENTION, SHIFTED_WINDOW_ATTENTION = load_spec()[1]


# ------------------------------------------------------------------ references
def _attend(q, k, v, heads, scale, bias=None):
    r, n, d = q.shape
    q, k, v = (t.reshape(r, -1, heads, d // heads).transpose(1, 2).float() for t in (q, k, v))
    s = q @ k.transpose(-1, -2) * scale
    if bias is not None:
        s = s + bias
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(r, n, d)


def proxy_pool_ref(x: torch.Tensor, window, groups) -> torch.Tensor:
    return layout.proxy_pool(x.float(), tuple(window), tuple(groups)).to(x.dtype)


def window_attention_ref(q, k, v, num_heads: int, scale: float | None = None) -> torch.Tensor:
    scale = scale or 1.0 / math.sqrt(q.shape[-1] // num_heads)
    return _attend(q, k, v, num_heads, scale).to(q.dtype)


def shifted_window_attention_ref(q, k, v, grid, num_heads: int, window, scale: float | None = None):
    """Roll, re-window, masked attention, roll back: the op's definition, in fp32."""
    grid, window = tuple(int(g) for g in grid), tuple(window)
    scale = scale or 1.0 / math.sqrt(q.shape[-1] // num_heads)
    q, k, v = (layout.shift_windows(t, grid, window) for t in (q, k, v))
    bias = layout.shift_region_bias(grid, window, torch.float32, q.device)  # (nW, N, N)
    b = q.shape[0] // bias.shape[0]
    out = _attend(q, k, v, num_heads, scale, bias.repeat(b, 1, 1)[:, None])
    return layout.shift_windows(out, grid, window, inverse=True).to(q.dtype)


REFERENCES = {
    PROXY_POOL: proxy_pool_ref,
    WINDOW_ATTENTION: window_attention_ref,
    SHIFTED_WINDOW_ATTENTION: shifted_window_attention_ref,
}
