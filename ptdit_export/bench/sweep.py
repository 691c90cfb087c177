"""Efficiency sweep: latency and peak memory of one denoiser step, PT-DiT against dense baselines.

For each sweep point (an image size with the paper's window, or a video of F latent frames with
temporal window 4), three models are measured: the PT-DiT and the two dense baselines of
`ptdit_export.model.dense` (equal width and depth, equal parameter count), each with

  onnxruntime  the exported portable fp32 graph (standard ops) on ONNX Runtime's CPU provider;
  eager        PyTorch eager on the CPU, fp32, the "sdpa" attention backend (the release's);
  eager/cuda   (`device="cuda"`) PyTorch eager in bf16 with SDPA, plus model FLOP utilisation.

CPU runs: every (model, backend) of a point lives in its own fresh worker process, and the parent
makes them take turns (round-robin, order rotated each round), so every PT-DiT / dense ratio comes
from one interleaved run. A worker's peak memory is its VmHWM (the high-water mark of its resident
set, /proc/self/status) minus that of an idle worker that imported the same libraries. VmHWM, not
getrusage's ru_maxrss: on Linux ru_maxrss survives exec, so a spawned child reports at least its
parent's peak. The peak includes the model's weights (and ONNX Runtime's copy of them).

Sizes whose analytic cost or predicted memory exceed the settings' limits are not run; the table
says so and why (`skip_reason`). Analytic GFLOPs (`ptdit_export.flops`) sit beside every row.
This module holds the settings, the points and what both runners share; `run.run_sweep` drives
the runners of `cpu` (worker processes) and `cuda` (in process); `report` makes the table, plots
and the document section.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptdit_export.flops import eq4_ratio, latent_grid, model_flops
from ptdit_export.model.config import PTDiTConfig, window_schedule
from ptdit_export.model.dense import (
    DenseDiTConfig,
    count_parameters,
    dense_config_equal_params,
    dense_config_equal_width,
)
from ptdit_export.model.presets import load_config

log = logging.getLogger(__name__)

MODELS = ("pt-dit", "dense-equal-width", "dense-equal-params")
BACKENDS = ("onnxruntime", "eager")
DEFAULT_RESOLUTIONS = (256, 512, 768, 1024, 1536, 2048)  # N = 256 ... 16384 tokens
DEFAULT_VIDEO_FRAMES = (4, 16, 64)  # latent frames at 256 px: N = 1024, 4096, 16384
# bf16 dense tensor-core peak, TFLOP/s (SXM parts; H200 has the H100's compute)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}
Config = PTDiTConfig | DenseDiTConfig


@dataclass(frozen=True)
class BenchSettings:
    """What `ptdit-export bench` measures. Saved as bench_settings.json beside the results."""

    model: str = "small"  # preset or config JSON; its width is kept
    layers: int | None = None  # depth of the PT-DiT; None: 1 on the CPU, the preset's own on CUDA
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS  # image sides in pixels, paper window each
    video_resolution: int = 256  # video side in pixels
    video_frames: tuple[int, ...] = DEFAULT_VIDEO_FRAMES  # latent frames (multiples of 4)
    backends: tuple[str, ...] = BACKENDS  # CPU: onnxruntime and/or eager; CUDA: eager only
    device: str = "cpu"  # cpu | cuda
    threads: int = 1  # intra-op threads (torch and ONNX Runtime); the CPU is shared
    warmup: int = 1  # untimed runs per (model, backend) and point
    repeats: int = 2  # timed, interleaved runs; the median is reported
    batch: int = 1  # latents per step (classifier-free guidance would double it)
    text_len: int = 200  # caption tokens (the release's T5 max length), no padding
    max_memory_gb: float | None = 8.0  # skip runs predicted above this; None: 90% of the GPU on CUDA
    max_gflops: float | None = 2000.0  # skip runs whose analytic cost exceeds this; None: no cap
    peak_tflops: float | None = None  # CUDA: device peak for MFU; None: from PEAK_TFLOPS by name
    seed: int = 0  # random weights (every parameter) and inputs
    opset: int = 18  # ONNX opset of the exported graphs

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"--device {self.device!r}: choose cpu or cuda")
        unknown = set(self.backends) - set(BACKENDS)
        if unknown or not self.backends:
            raise ValueError(f"--backend {sorted(unknown) or '(none)'}: choose from {', '.join(BACKENDS)}")
        if self.device == "cuda" and "onnxruntime" in self.backends:
            raise ValueError("--device cuda measures PyTorch eager only; pass --backend eager")
        if self.repeats < 1 or self.warmup < 0 or self.threads < 1 or self.batch < 1:
            raise ValueError("--repeats, --threads and --batch must be >= 1 and --warmup >= 0")
        if self.layers is not None and self.layers < 1:
            raise ValueError("--layers must be >= 1 (leave it out for the device's default)")
        bad = [f for f in self.video_frames if f % 4 or f < 4]
        if bad:
            raise ValueError(
                f"--video-frames {bad}: latent frames must be multiples of the temporal window 4"
            )

    @property
    def dtype(self) -> str:
        return "bf16" if self.device == "cuda" else "fp32"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------- the sweep
@dataclass(frozen=True)
class SweepPoint:
    """One input size: latent grid, token count and the paper's window for it."""

    kind: str  # image | video
    resolution: int  # pixels, square
    latent_frames: int
    grid: tuple[int, int, int]  # latent (F, H, W)
    tokens: int  # N per sample = F * (H / patch) * (W / patch)
    window: tuple[int, int, int]  # (pf, ph, pw) from window_schedule

    @property
    def pixel_frames(self) -> int:
        """Frames before a causal VAE with temporal compression 4: 1 + 4 (F - 1)."""
        return 1 if self.latent_frames == 1 else 1 + 4 * (self.latent_frames - 1)

    @property
    def label(self) -> str:
        if self.kind == "image":
            return f"image {self.resolution} px"
        return f"video {self.resolution} px x {self.latent_frames} lat. frames"

    @property
    def eq4(self) -> float:
        """Eq. 4 / Eq. 3: PT-DiT's attention cost over global attention, 1/P^2 + 1/P + 2P/N."""
        return float(eq4_ratio(math.prod(self.window), self.tokens))


def sweep_points(settings: BenchSettings, patch_size: int = 2) -> list[SweepPoint]:
    """Images at each resolution, then video at video_resolution for each latent frame count,
    each with window_schedule's window; sorted by token count (images first on ties)."""
    points = []
    specs = [("image", r, 1) for r in settings.resolutions]
    specs += [("video", settings.video_resolution, f) for f in settings.video_frames]
    for kind, res, frames in specs:
        _, hh, ww = latent_grid(res)
        grid = (frames, hh, ww)
        window = window_schedule(res, frames)
        step = patch_size * window[1]
        if hh % step or frames % window[0]:
            raise ValueError(
                f"{res} px ({hh} latent) does not split into windows of {window[1]} patches of {patch_size}; "
                f"use a multiple of {8 * step} px"
            )
        tokens = frames * (hh // patch_size) * (ww // patch_size)
        points.append(SweepPoint(kind, res, frames, grid, tokens, window))
    return sorted(points, key=lambda p: (p.tokens, p.kind != "image", p.resolution))


def base_config(settings: BenchSettings) -> PTDiTConfig:
    """The PT-DiT measured: the preset's width, at settings.layers (device default when None)."""
    cfg = load_config(settings.model)
    layers = settings.layers or (1 if settings.device == "cpu" else cfg.num_layers)
    return cfg.replace(num_layers=layers)


def point_configs(base: PTDiTConfig, point: SweepPoint) -> dict[str, Config]:
    """The three models at a point: PT-DiT with the point's window (one proxy per window, as in
    the paper and the release) and the dense baselines (windows do not change parameter counts)."""
    pt = base.replace(compress_ratios=point.window, proxy_compress_ratios=point.window)
    return {
        "pt-dit": pt,
        "dense-equal-width": dense_config_equal_width(base),
        "dense-equal-params": dense_config_equal_params(base),
    }


def largest_scores(cfg: Config, point: SweepPoint, text_len: int) -> int:
    """Elements of the largest attention score matrix per sample and head (Nq * Nk)."""
    n, text = point.tokens, text_len
    if isinstance(cfg, DenseDiTConfig):
        return max(n * n, text * n)
    win = math.prod(cfg.window)
    proxies = n // win * math.prod(cfg.proxy_groups)
    return max(proxies * proxies, n * proxies, n * win, n * text)


# Peak memory model, bytes: OVERHEAD (sessions, thread pools, first-touch pages) + WEIGHT_COPIES
# copies of the weights + ACTIVATION_COPIES tensors [batch, N, hidden] + (ONNX Runtime only: its
# portable graph writes attention out, in fp32) SCORE_COPIES score tensors [batch, heads, Nq, Nk] of
# the largest attention. An upper fit of the 54 peaks of docs/benchmarks_efficiency.json (`small`,
# 1 layer, CPU); closest, in MB measured / predicted: ORT PT-DiT, video of 4,096 tokens 388 / 395;
# ORT dense equal params at 16,384 tokens 7,086 / 7,238. One score tensor is alive at a time (the
# graph's scaling and softmax keep no second one); eager holds none (SDPA's CPU flash kernel).
OVERHEAD = 64 * 2**20
ACTIVATION_COPIES = 40
SCORE_COPIES = 1
WEIGHT_COPIES = {"onnxruntime": 3, "eager": 1}  # ORT: initialisers, prepacked copies, transforms


def predicted_peak_bytes(cfg: Config, point: SweepPoint, backend: str, settings: BenchSettings) -> int:
    """A conservative estimate of one step's peak memory above the idle process, for skipping."""
    elem = 2 if settings.dtype == "bf16" else 4
    weights = count_parameters(cfg) * elem * WEIGHT_COPIES[backend]
    acts = ACTIVATION_COPIES * settings.batch * point.tokens * cfg.hidden_size * elem
    scores = 0
    if backend == "onnxruntime":  # the math decomposition materialises softmax(q k^T) per head
        scores = SCORE_COPIES * settings.batch * cfg.num_heads * largest_scores(cfg, point, settings.text_len)
        scores *= 4  # the portable graph keeps scores in fp32
    return OVERHEAD + weights + acts + scores


def skip_reason(
    cfg: Config, point: SweepPoint, backend: str, settings: BenchSettings, gpu_bytes: int | None = None
) -> str | None:
    """Why a run is left out (analytic cost over max_gflops, predicted memory over the budget), or None."""
    gflops = model_flops(cfg, point.grid, settings.batch, settings.text_len).total / 1e9
    if settings.max_gflops is not None and gflops > settings.max_gflops:
        return f"{gflops:,.0f} GFLOPs > --max-gflops {settings.max_gflops:,.0f}"
    budget = settings.max_memory_gb
    if budget is None and gpu_bytes is not None:
        budget = 0.9 * gpu_bytes / 1e9
    peak = predicted_peak_bytes(cfg, point, backend, settings) / 1e9
    if budget is not None and peak > budget:
        return f"predicted peak {peak:.1f} GB > {budget:.1f} GB budget"
    return None


# ------------------------------------------------------------------------- environment
def environment(settings: BenchSettings) -> dict[str, Any]:
    """Machine, software and date of a run."""
    import torch

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # GPU machines may lack it; only the CPU path needs it
        ort_version = None
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "command": _command_line(),
    }
    if settings.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


def _command_line() -> str:
    name = Path(sys.argv[0]).name
    if name == "bench_cmd.py":
        name = "python -m ptdit_export.cli.bench_cmd"
    return " ".join([name, *(shlex.quote(a) for a in sys.argv[1:])])


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def peak_tflops(device_name: str, given: float | None = None) -> float:
    """The bf16 dense peak used for MFU: `given`, else looked up by GPU name."""
    if given:
        return given
    for key, value in PEAK_TFLOPS.items():
        if key in device_name:
            return value
    raise ValueError(f"no bf16 peak known for {device_name!r}; pass --peak-tflops (dense bf16 TFLOP/s)")


def point_row(point: SweepPoint, cfgs: dict[str, Config], settings: BenchSettings) -> dict[str, Any]:
    flops = {k: model_flops(c, point.grid, settings.batch, settings.text_len) for k, c in cfgs.items()}
    pt, dense = flops["pt-dit"], flops["dense-equal-width"]
    return {
        "kind": point.kind,
        "label": point.label,
        "resolution": point.resolution,
        "latent_frames": point.latent_frames,
        "pixel_frames": point.pixel_frames,
        "grid": list(point.grid),
        "tokens": point.tokens,
        "window": list(point.window),
        "eq4_ratio": point.eq4,
        "attention_ratio": pt.visual_attention / dense.visual_attention,
        "gflops": {k: f.total / 1e9 for k, f in flops.items()},
        "runs": {b: {} for b in settings.backends},
        "parity": {},
    }


def summarise(times: list[float]) -> dict[str, Any]:
    return {"ms": 1e3 * statistics.median(times), "times_ms": [round(1e3 * t, 2) for t in times]}


def interleave(
    runners: list[Any], warmup: int, repeats: int, run: Callable[[Any], float]
) -> list[list[float]]:
    """Round-robin over runners, rotating the starting one each round; timed rounds after warmup."""
    times: list[list[float]] = [[] for _ in runners]
    k = len(runners)
    for r in range(warmup + repeats):
        for j in range(k):
            i = (r + j) % k
            seconds = run(runners[i])
            if r >= warmup:
                times[i].append(seconds)
    return times


def build_model(cfg: Config, seed: int):
    from ptdit_export.export.source import randomise_
    from ptdit_export.model.dense import DenseDiT
    from ptdit_export.model.ptdit import PTDiT

    model = DenseDiT(cfg) if isinstance(cfg, DenseDiTConfig) else PTDiT(cfg)
    return randomise_(model, seed).eval()


def bench_inputs(cfg: Config, point: SweepPoint, batch: int, text_len: int, seed: int) -> dict[str, Any]:
    """The step's inputs as NumPy arrays (same values for every model of a point)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    width = cfg.caption_channels or cfg.hidden_size
    return {
        "hidden_states": rng.standard_normal((batch, cfg.in_channels, *point.grid), dtype=np.float32),
        "timestep": (rng.random(batch) * 1000).astype(np.float32),
        "encoder_hidden_states": rng.standard_normal((batch, text_len, width), dtype=np.float32),
        "encoder_attention_mask": np.ones((batch, text_len), dtype=np.int64),
    }
