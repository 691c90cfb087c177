"""The GPU side of the efficiency sweep: one point in process, bf16 eager with SDPA."""

from __future__ import annotations

import logging
from typing import Any

from ptdit_export.bench.sweep import (
    BenchSettings,
    SweepPoint,
    bench_inputs,
    build_model,
    interleave,
    peak_tflops,
    point_configs,
    point_row,
    predicted_peak_bytes,
    skip_reason,
    summarise,
)
from ptdit_export.model.config import PTDiTConfig

log = logging.getLogger(__name__)


class CudaRunner:
    """One point on a GPU, in process: bf16 eager with SDPA, CUDA-event timing, interleaved models,
    peak memory from torch.cuda.max_memory_allocated (reset before each run), MFU against the peak."""

    def __init__(self, settings: BenchSettings):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch.cuda.is_available() is False; run on a GPU machine")
        self.settings = settings
        self.name = torch.cuda.get_device_name(0)
        self.peak_tflops = peak_tflops(self.name, settings.peak_tflops)
        self.gpu_bytes = torch.cuda.get_device_properties(0).total_memory

    def __call__(self, base: PTDiTConfig, point: SweepPoint) -> dict[str, Any]:
        import torch

        from ptdit_export.model.attention import use_backend

        s = self.settings
        cfgs = point_configs(base, point)
        row = point_row(point, cfgs, s)
        runs = row["runs"]["eager"]
        models, plan = {}, []
        for key, cfg in cfgs.items():
            runs[key] = {"predicted_peak_mb": predicted_peak_bytes(cfg, point, "eager", s) / 2**20}
            reason = skip_reason(cfg, point, "eager", s, gpu_bytes=self.gpu_bytes)
            if reason:
                runs[key]["skipped"] = reason
                continue
            plan.append(key)
            feeds = bench_inputs(cfg, point, s.batch, s.text_len, s.seed)
            args = [torch.from_numpy(v).cuda() for v in feeds.values()]
            args = [a.bfloat16() if a.is_floating_point() and i != 1 else a for i, a in enumerate(args)]
            models[key] = (build_model(cfg, s.seed).to("cuda", torch.bfloat16), args)
        peaks = dict.fromkeys(plan, 0)

        def run(key: str) -> float:
            model, args = models[key]
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            with torch.inference_mode(), use_backend("sdpa"):
                start.record()
                model(*args)
                end.record()
            torch.cuda.synchronize()
            peaks[key] = max(peaks[key], torch.cuda.max_memory_allocated() - before)
            return start.elapsed_time(end) / 1e3

        times = interleave(plan, s.warmup, s.repeats, run)
        for key, t in zip(plan, times):
            entry = runs[key] | summarise(t)
            params = sum(p.numel() * p.element_size() for p in models[key][0].parameters())
            entry["loaded_mb"] = params / 2**20
            entry["peak_mb"] = (peaks[key] + params) / 2**20
            entry["tflops"] = row["gflops"][key] / entry["ms"]  # GFLOP / ms = TFLOP/s
            entry["mfu"] = entry["tflops"] / self.peak_tflops
            runs[key] = entry
            log.info(
                "  %-18s %9.2f ms  %6.1f TFLOP/s  MFU %.1f%%",
                key,
                entry["ms"],
                entry["tflops"],
                100 * entry["mfu"],
            )
        models.clear()
        torch.cuda.empty_cache()
        return row
