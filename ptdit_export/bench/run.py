"""Drive an efficiency sweep: every point through the CPU or the CUDA runner, results as JSON."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptdit_export.bench.sweep import (
    BenchSettings,
    base_config,
    environment,
    point_configs,
    sweep_points,
)
from ptdit_export.model.dense import count_parameters

log = logging.getLogger(__name__)


def run_sweep(
    settings: BenchSettings,
    cache_dir: str | Path | None = None,
    on_point: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Measure every point; returns the JSON-ready results (environment, models, points)."""
    base = base_config(settings)
    points = sweep_points(settings, base.patch_size)
    first = point_configs(base, points[0]) if points else {}
    results: dict[str, Any] = {
        "settings": settings.to_dict(),
        "environment": environment(settings),
        "models": {
            k: {"layers": c.num_layers, "hidden": c.hidden_size, "parameters": count_parameters(c)}
            for k, c in first.items()
        },
        "points": [],
    }
    if settings.device == "cuda":
        from ptdit_export.bench.cuda import CudaRunner

        measure = CudaRunner(settings)
        results["environment"]["peak_tflops"] = measure.peak_tflops
    else:
        from ptdit_export.bench.cpu import CpuRunner

        measure = CpuRunner(settings, cache_dir)
        results["environment"]["idle_worker_mb"] = measure.idle_kb / 1024
    t0 = time.perf_counter()
    for i, point in enumerate(points):
        log.info("[%d/%d] %s: N = %d, window %s", i + 1, len(points), point.label, point.tokens, point.window)
        row = measure(base, point)
        results["points"].append(row)
        if on_point:
            on_point(results)
    results["environment"]["sweep_minutes"] = round((time.perf_counter() - t0) / 60, 1)
    return results
