"""The CUDA side of the torch engine: which attention backend runs, and CUDA graphs of a step.

- `resolve_attention`: "auto" becomes "fused" (the kernels of `ptdit_export.kernels` behind the
  model's attention seam) on a CUDA device when libptdit_kernels.so loads, else "sdpa"; the
  fallback is logged once per reason, never per call.
- `StepGraphs`: one CUDA graph per input signature (shapes and dtypes). The first call with a
  new signature warms up on a side stream and captures; later calls copy the inputs into the
  captured buffers and replay. The output is the captured buffer: read it before the next call.

Imports torch and ptdit_export only inside functions; the runtime core never imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ATTENTION = ("auto", "fused", "sdpa", "math")
_said: set[str] = set()


def say_once(message: str) -> None:
    """Log `message` as a warning the first time only."""
    if message not in _said:
        _said.add(message)
        log.warning(message)


def find_kernels_library(folder: Path | None, given: str | None) -> Path | None:
    """The kernels library to use: `given`, else libptdit_kernels.so beside the weights, else
    None (the default search of `ptdit_export.kernels.library_path`)."""
    from ptdit_export import kernels

    if given:
        return Path(given)
    if folder is not None and (folder / kernels.LIBRARY_NAME).is_file():
        return folder / kernels.LIBRARY_NAME
    return None


def resolve_attention(attention: str, device: Any, library: Path | None = None) -> str:
    """The attention backend for a model on `device` (a torch.device)."""
    from ptdit_export import kernels

    if attention not in ATTENTION:
        raise ValueError(f"attention {attention!r} is not one of {', '.join(ATTENTION)}")
    if attention in ("sdpa", "math"):
        return attention
    if device.type != "cuda":
        if attention == "fused":
            raise ValueError("attention 'fused' needs device='cuda' (the kernels are CUDA kernels)")
        return "sdpa"
    if library is not None:
        kernels.use_library(library)
    reason = kernels.unavailable(library)
    if reason is None:
        return "fused"
    if attention == "fused":
        raise ValueError(f"attention 'fused': {reason}")
    say_once(f"fused CUDA kernels unavailable, attention runs on SDPA: {reason}")
    return "sdpa"


class StepGraphs:
    """fn(*tensors) -> tensor, replayed from one CUDA graph per input signature."""

    def __init__(self, fn: Callable, warmup: int = 2):
        self.fn, self.warmup = fn, warmup
        self.graphs: dict[tuple, tuple] = {}  # signature -> (graph, static inputs, static output)

    def __call__(self, *args):
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(args)
            log.info("captured a CUDA graph for inputs %s", [k[0] for k in key])
        graph, inputs, output = entry
        for static, arg in zip(inputs, args):
            if static.data_ptr() != arg.data_ptr():
                static.copy_(arg, non_blocking=True)
        graph.replay()
        return output

    def _capture(self, args) -> tuple:
        import torch

        inputs = [a.clone() for a in args]
        side = torch.cuda.Stream(device=inputs[0].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: lazy inits, caches and autotuning stay out of the graph
            for _ in range(self.warmup):
                self.fn(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # its own memory pool: graphs of other shapes never share one
            output = self.fn(*inputs)
        return graph, inputs, output

    def clear(self) -> None:
        self.graphs.clear()
