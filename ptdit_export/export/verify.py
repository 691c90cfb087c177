"""Parity of an exported transformer with the PyTorch model it came from.

The PyTorch model is rebuilt from the source recorded in export.json (preset + seed, or
checkpoint) in fp32, both sides get the same random inputs, and the ONNX graph runs on ONNX
Runtime's CPU provider (fp32/fp16) or ONNX's reference evaluator (bf16, which ONNX Runtime's CPU
provider cannot run). Errors are measured against the fp32 model with the tolerance written down
for the graph's precision.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptdit_export.export.artifacts import read_json
from ptdit_export.export.transformer import ExportSettings, example_inputs
from ptdit_export.tolerances import tolerance

log = logging.getLogger(__name__)


class VerifyInputError(FileNotFoundError):
    """The graph to verify (or a file beside it) is missing."""


DIMS = ("batch", "frames", "latent_height", "latent_width", "text_len")  # the order of a shape
_NAMES = dict(zip(DIMS, ("batch", "frames", "latent height", "latent width", "text length")))


class ShapeError(ValueError):
    """A shape the exported graph was not exported for."""


@dataclass(frozen=True)
class Check:
    shape: tuple  # (batch, frames, latent height, latent width, text length)
    output: str
    max_abs: float
    max_rel: float
    tolerance: float
    runner: str
    file: str = ""  # the ONNX file checked

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel)) and self.max_rel <= self.tolerance


@dataclass(frozen=True)
class ShapeRules:
    """The shapes a graph accepts: its recorded profiles (min..max per dimension, in DIMS order)
    and the multiples the windows need (frames: temporal window; sizes: patch * window)."""

    ranges: tuple[tuple[int, int], ...]
    steps: tuple[int, ...]

    @classmethod
    def of(cls, export: dict[str, Any], config) -> ShapeRules:
        """From export.json's "profiles" (older files: the settings' defaults) and the config."""
        profiles = export.get("profiles") or {
            k: dataclasses.asdict(v) for k, v in ExportSettings.from_dict(export).profiles().items()
        }
        wf, wh, ww = config.compress_ratios
        p = config.patch_size
        ranges = tuple((int(profiles[k]["min"]), int(profiles[k]["max"])) for k in DIMS)
        return cls(ranges, (1, wf, p * wh, p * ww, 1))

    def allowed(self, i: int) -> tuple[int, int] | None:
        """Smallest and largest allowed value of dimension i, or None when none is."""
        (lo, hi), step = self.ranges[i], self.steps[i]
        first, last = -(-lo // step) * step, hi // step * step
        return (first, last) if first <= last else None

    def nearest(self, shape: tuple) -> tuple:
        """The allowed shape closest to `shape`, dimension by dimension (ties: the smaller)."""
        out = []
        for i, v in enumerate(shape):
            bounds = self.allowed(i)
            if bounds is None:
                raise ShapeError(f"no {_NAMES[DIMS[i]]} fits the recorded profiles: {self.describe()}")
            v = min(max(v, bounds[0]), bounds[1])
            down = v - (v - bounds[0]) % self.steps[i]
            up = down + self.steps[i] if down < v else down
            out.append(down if v - down <= up - v or up > bounds[1] else up)
        return tuple(out)

    def problems(self, shape: tuple) -> list[str]:
        if len(shape) != len(DIMS):
            return [f"a shape has {len(DIMS)} numbers (B F H W L), not {len(shape)}"]
        found = []
        for i, v in enumerate(shape):
            (lo, hi), step, name = self.ranges[i], self.steps[i], _NAMES[DIMS[i]]
            if not lo <= v <= hi:
                found.append(f"{name} {v} is outside {lo}..{hi}")
            elif v % step:
                found.append(f"{name} {v} is not a multiple of {step}")
        return found

    def describe(self) -> str:
        parts = []
        for i, dim in enumerate(DIMS):
            (lo, hi), step = self.ranges[i], self.steps[i]
            text = f"{_NAMES[dim]} {lo}" if lo == hi else f"{_NAMES[dim]} {lo}..{hi}"
            parts.append(text + (f" (multiples of {step})" if step > 1 else ""))
        return ", ".join(parts)

    def check(self, shape: tuple, where: str) -> None:
        found = self.problems(tuple(shape))
        if found:
            example = " ".join(map(str, self.nearest(tuple(shape) if len(shape) == len(DIMS) else (1,) * 5)))
            raise ShapeError(
                f"shape {' '.join(map(str, shape))} does not fit {where} ({'; '.join(found)}); "
                f"it takes {self.describe()}, e.g. --shape {example}"
            )


def default_shapes(settings: ExportSettings, rules: ShapeRules) -> list[tuple]:
    """Inside the recorded profiles: the traced shape and (dynamic graphs) one with another batch,
    a taller latent and a shorter caption, one with a larger batch, a wider latent and longer text."""
    b, f, h, w, n = (
        settings.batch,
        settings.frames,
        settings.latent_height,
        settings.latent_width,
        settings.text_len,
    )
    wanted = [(b, f, h, w, n)]
    if settings.dynamic:
        _, _, step_h, step_w, _ = rules.steps
        wanted.append((1, f, h + step_h, w, max(n // 2, 1)))
        wanted.append((b + 1, f, h, w + 2 * step_w, n + 3))
    shapes: list[tuple] = []
    for shape in map(rules.nearest, wanted):
        if shape not in shapes:
            shapes.append(shape)
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
    """Check DIR/transformer/model.onnx against the PyTorch model; one Check per shape."""
    return verify_onnx(Path(engine_dir) / "transformer" / "model.onnx", shapes)


def verify_onnx(path: str | Path, shapes: list[tuple] | None = None) -> list[Check]:
    """Run an exported graph (with export.json and config.json beside it) and the PyTorch model it
    came from on the same inputs; one Check per shape. Shapes must fit the recorded profiles
    (default: shapes inside them); ShapeError names the allowed ranges otherwise."""
    from ptdit_export.export.source import model_from_source
    from ptdit_export.model.presets import load_config

    path = Path(path)
    if not path.is_file():
        raise VerifyInputError(f"{path} is missing: export first (ptdit-export export --out DIR)")
    export = read_json(path.parent / "export.json")
    settings = ExportSettings.from_dict(export)
    rules = ShapeRules.of(export, load_config(path.parent))
    for shape in shapes or ():
        rules.check(tuple(shape), str(path))
    shapes = [tuple(s) for s in shapes] if shapes else default_shapes(settings, rules)
    # 1. the PyTorch answers first, then the model is freed before the graph is loaded: the two
    #    never sit in memory together (the 1.1B parity run peaks at one of them, not both)
    model = model_from_source(export["source"], dtype=torch.float32)
    cases = []
    for shape in shapes:
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
        cases.append((shape, feeds, want))
    del model
    gc.collect()
    # 2. the graph on the same inputs
    run, runner = runner_for(path, settings.precision)
    quant = read_json(path.parent / "quant.json") if (path.parent / "quant.json").is_file() else {}
    tol = tolerance("onnx", quant.get("precision", settings.precision))
    checks = []
    for shape, feeds, want in cases:
        got = np.asarray(run(feeds)[0]).astype(np.float64)
        diff = np.abs(got - want)
        rel = float(diff.max() / max(np.abs(want).max(), 1e-30)) if np.isfinite(got).all() else float("inf")
        output = export.get("output", "model_output")
        checks.append(Check(shape, output, float(diff.max()), rel, tol, runner, str(path)))
        log.info(
            "verify %s %s: max abs %.3e, max rel %.3e (tolerance %.1e)", path, shape, diff.max(), rel, tol
        )
    return checks
