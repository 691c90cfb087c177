"""Parity of an exported transformer with the PyTorch model it came from.

The PyTorch model is rebuilt from the source recorded in export.json (preset + seed, or
checkpoint) in fp32, both sides get the same random inputs, and the ONNX graph runs on ONNX
Runtime's CPU provider (fp32/fp16) or ONNX's reference evaluator (bf16, which ONNX Runtime's CPU
provider cannot run). Errors are measured against the fp32 model with the tolerance written down
for the graph's precision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ptdit_export.export.artifacts import read_json
from ptdit_export.export.transformer import ExportSettings, example_inputs
from ptdit_export.tolerances import tolerance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    shape: tuple  # (batch, frames, latent height, latent width, text length)
    output: str
    max_abs: float
    max_rel: float
    tolerance: float
    runner: str

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel)) and self.max_rel <= self.tolerance


def default_shapes(settings: ExportSettings, config) -> list[tuple]:
    """The traced shape, plus (dynamic graphs) another batch, a non-square size and text length."""
    b, f, h, w, n = (
        settings.batch,
        settings.frames,
        settings.latent_height,
        settings.latent_width,
        settings.text_len,
    )
    shapes = [(b, f, h, w, n)]
    if settings.dynamic:
        step_h = config.patch_size * config.compress_ratios[1]
        step_w = config.patch_size * config.compress_ratios[2]
        shapes.append((1, f, h + step_h, w, max(n // 2, 1)))
        shapes.append((b + 1, f, h, w + 2 * step_w, n + 3))
    return shapes


def runner_for(path: Path, precision: str):
    """A callable feeds -> outputs, and its name."""
    if precision == "bf16":
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(str(path))
        return (lambda feeds: evaluator.run(None, feeds)), "onnx.reference"
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda feeds: session.run(None, feeds)), "onnxruntime-cpu"


def _numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy()


def verify_dir(engine_dir: str | Path, shapes: list[tuple] | None = None) -> list[Check]:
    """Run DIR/transformer/model.onnx and the PyTorch model on the same inputs; one Check per shape."""
    from ptdit_export.export.source import model_from_source

    root = Path(engine_dir) / "transformer"
    export = read_json(root / "export.json")
    settings = ExportSettings.from_dict(export)
    model = model_from_source(export["source"], dtype=torch.float32)
    run, runner = runner_for(root / "model.onnx", settings.precision)
    quant = read_json(root / "quant.json") if (root / "quant.json").is_file() else {}
    tol = tolerance("onnx", quant.get("precision", settings.precision))
    checks = []
    for shape in shapes or default_shapes(settings, model.config):
        b, f, h, w, n = shape
        x, t, text, mask = example_inputs(model.config, settings, b, h, w, f, n)
        feeds = {
            "hidden_states": _numpy(x),
            "timestep": t.numpy(),
            "encoder_hidden_states": _numpy(text),
            "encoder_attention_mask": mask.numpy(),
        }
        with torch.no_grad():
            want = model(x.float(), t, text.float(), mask).numpy().astype(np.float64)
        got = np.asarray(run(feeds)[0]).astype(np.float64)
        diff = np.abs(got - want)
        rel = float(diff.max() / max(np.abs(want).max(), 1e-30)) if np.isfinite(got).all() else float("inf")
        checks.append(
            Check(tuple(shape), export.get("output", "model_output"), float(diff.max()), rel, tol, runner)
        )
        log.info("verify %s: max abs %.3e, max rel %.3e (tolerance %.1e)", shape, diff.max(), rel, tol)
    return checks
