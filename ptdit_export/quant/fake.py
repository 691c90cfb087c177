"""Fake quantization in PyTorch: the same placement and scales as the Q/DQ graphs, on the model.

An independent check of the graphs' accuracy (no ONNX involved) and the way fp8 is measured on
machines without a Hopper GPU: `fake_quantized(model, precision, feeds)` calibrates the largest
input magnitude of every transformer-block Linear over FEEDS, then, inside the `with`, runs each
of them as linear(fq(x), fq_w(W)) with per-tensor activation and per-output-channel weight
scales (int8: round to nearest, +-127; fp8: torch.float8_e4m3fn, +-448).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ptdit_export.quant.placement import BLOCK_LINEAR
from ptdit_export.quant.qdq import QMAX


def fake_quant(x: torch.Tensor, scale: torch.Tensor, precision: str) -> torch.Tensor:
    y = (x.float() / scale).clamp(-QMAX[precision], QMAX[precision])
    y = torch.round(y) if precision == "int8" else y.to(torch.float8_e4m3fn).float()
    return (y * scale).to(x.dtype)


@contextmanager
def fake_quantized(model: torch.nn.Module, precision: str, feeds: list[tuple]) -> Iterator[int]:
    """Calibrate on FEEDS (tuples of model inputs), then fake-quantize the block linears; yields
    how many linears were quantized."""
    linears = {
        n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and BLOCK_LINEAR.match(n)
    }
    amax = dict.fromkeys(linears, 0.0)

    def recorder(name):
        def hook(module, args):
            amax[name] = max(amax[name], float(args[0].detach().abs().max()))

        return hook

    handles = [m.register_forward_pre_hook(recorder(n)) for n, m in linears.items()]
    with torch.no_grad():
        for feed in feeds:
            model(*feed)
    for h in handles:
        h.remove()
    originals = {n: m.forward for n, m in linears.items()}
    qmax = QMAX[precision]
    for name, m in linears.items():
        w_scale = m.weight.detach().float().abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / qmax
        w_fake = fake_quant(m.weight.detach(), w_scale, precision)
        a_scale = torch.tensor(max(amax[name], 1e-8) / qmax)

        def forward(x, m=m, w=w_fake, s=a_scale):
            return torch.nn.functional.linear(fake_quant(x, s, precision), w, m.bias)

        m.forward = forward
    try:
        yield len(linears)
    finally:
        for name, m in linears.items():
            m.forward = originals[name]
