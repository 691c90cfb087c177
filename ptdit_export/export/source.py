"""Where a model comes from (a preset with seeded random weights, or a checkpoint), recorded in
every export so `verify` and rebuilds can make the same PyTorch model again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def randomise_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random with a sensible scale, zero-initialised branches included, so the
    proxy and shifted-window paths are live in parity runs of untrained presets."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = p[0].numel() ** -0.5 if p.ndim > 1 and "table" not in name else 0.2
            p.copy_((torch.randn(p.shape, generator=g) * std).to(p.dtype))
    return model


def source_of(model_arg: str, seed: int = 0) -> dict[str, Any]:
    """Describe MODEL (preset name, checkpoint folder/file or config JSON) for export.json."""
    from ptdit_export.model.presets import PRESETS

    if model_arg in PRESETS:
        weights = PRESETS[model_arg].weights
        if weights is not None:
            return {"checkpoint": str(weights), "preset": model_arg}
        return {"preset": model_arg, "seed": seed}
    path = Path(model_arg)
    if not path.exists():
        raise ValueError(
            f"--model {model_arg!r} is neither a preset ({', '.join(PRESETS)}) nor an existing "
            "checkpoint folder, weights file or config JSON"
        )
    if path.suffix == ".json":
        return {"config": str(path.resolve()), "seed": seed}
    return {"checkpoint": str(path.resolve())}


def model_from_source(source: dict[str, Any], dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The PyTorch model a source describes, in eval mode."""
    from ptdit_export.model import PTDiT

    if "checkpoint" in source:
        model = PTDiT.from_pretrained(source["checkpoint"], dtype=dtype)
    else:
        model = PTDiT.from_config(source.get("preset") or source["config"])
        randomise_(model, int(source.get("seed", 0)))
        log.info(
            "random weights (seed %s): parity runs only, the pictures will be noise", source.get("seed", 0)
        )
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()
