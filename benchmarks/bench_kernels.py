"""Fused CUDA kernels vs the PyTorch path, at the released model's shapes (needs a GPU).

    python benchmarks/bench_kernels.py [--iters 50] [--build-dir build] [--arch 90] [--json OUT.json]

Shapes: head dim 72 (16 heads, width 1152), windows 8x8 and 16x16, 4,096 and 16,384 tokens
(1024 and 2048 px), batch 2 (classifier-free guidance), bf16 and fp16.

1. Shifted-window attention: the fused kernel (gathers, masks and scatters by index arithmetic)
   against what the model does in PyTorch: roll + re-window q, k, v, SDPA with the region mask
   (built once, outside the timing, which favours PyTorch), roll the output back.
2. Window attention (no shift): fused kernel against re-shaping + SDPA.
3. Proxy pooling: achieved memory bandwidth as a share of the device's peak, and PyTorch's time.

Times come from CUDA events, twice: "eager" (calls in a loop, so host launch costs show when
they exceed GPU time) and "graph" (the same calls replayed from a CUDA graph: GPU time only);
speed-ups are PyTorch time / fused time, both measured in this run.
Builds build/lib/libptdit_kernels.so with CMake first if it is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ptdit_export import kernels  # noqa: E402
from ptdit_export.bench.load import load_report  # noqa: E402
from ptdit_export.model import layout  # noqa: E402

# Peak DRAM bandwidth in bytes/s by device name (first match wins; order matters).
PEAK_BANDWIDTH = [
    ("H100 PCIe", 2.0e12),
    ("H100 NVL", 3.9e12),
    ("H100", 3.35e12),  # SXM5 (HBM3)
    ("H200", 4.8e12),
]

# (label, batch, token grid (F, h, w), window, heads, head dim): the released width at 1024 and
# 2048 px, with the release's 8x8 window and the paper's 16x16 window for 2048 px
ATTENTION_SHAPES = [
    ("4k tokens, 8x8", 2, (1, 64, 64), (1, 8, 8), 16, 72),
    ("4k tokens, 16x16", 2, (1, 64, 64), (1, 16, 16), 16, 72),
    ("16k tokens, 8x8", 2, (1, 128, 128), (1, 8, 8), 16, 72),
    ("16k tokens, 16x16", 2, (1, 128, 128), (1, 16, 16), 16, 72),
]
POOL_SHAPES = [  # (label, tokens per sample, window, groups, channels), batch 2
    ("4k tokens, 8x8", 4096, (1, 8, 8), (1, 1, 1), 1152),
    ("16k tokens, 8x8", 16384, (1, 8, 8), (1, 1, 1), 1152),
    ("16k tokens, 16x16", 16384, (1, 16, 16), (1, 1, 1), 1152),
    ("4k tokens, 8x8, 2x2 proxies", 4096, (1, 8, 8), (1, 2, 2), 1152),
]


def peak_bandwidth(name: str) -> float | None:
    for key, value in PEAK_BANDWIDTH:
        if key in name:
            return value
    return None


def time_ms(iters: int, fn, *args) -> float:
    """Mean milliseconds per call of fn(*args), eager: CUDA events around a loop of calls.

    Includes the host-side launch cost whenever that exceeds the GPU time (many small ops).
    """
    for _ in range(10):  # warm-up (also loads the kernels' module)
        fn(*args)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn(*args)
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / iters


def time_graph_ms(iters: int, fn, *args, reps: int = 10) -> float | None:
    """Mean milliseconds per call of fn(*args) replayed from a CUDA graph: GPU time only.

    None if the calls cannot be captured.
    """
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                fn(*args)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(reps):
                fn(*args)
    except RuntimeError as err:
        print(f"  (CUDA graph capture failed: {err})")
        return None
    return time_ms(max(iters // reps, 1), graph.replay) / reps


def ratio_line(fused: float | None, ref: float | None, what: str) -> str:
    if fused is None or ref is None:
        return f"{what}: n/a"
    return f"{what}: fused {fused:8.3f} ms  torch {ref:8.3f} ms  speed-up {ref / fused:5.2f}x"


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    r, n, c = x.shape
    return x.view(r, n, heads, c // heads).transpose(1, 2)  # (R, H, N, dh)


def torch_shifted(q, k, v, grid, window, heads, bias):
    """The PyTorch path: roll and re-window, masked SDPA, roll back."""
    q, k, v = (split_heads(layout.shift_windows(t, grid, window), heads) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (R, H, N, dh)
    out = out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)
    return layout.shift_windows(out, grid, window, inverse=True)


def torch_window(q, k, v, heads):
    out = F.scaled_dot_product_attention(*(split_heads(t, heads) for t in (q, k, v)))
    return out.transpose(1, 2).reshape(q.shape)


def _pair(iters: int, fused, ref, fused_args, ref_args) -> dict:
    """Eager and graph times of the fused call and the PyTorch call, and the speed-ups."""
    out = {
        "fused_eager_ms": time_ms(iters, fused, *fused_args),
        "torch_eager_ms": time_ms(iters, ref, *ref_args),
        "fused_graph_ms": time_graph_ms(iters, fused, *fused_args),
        "torch_graph_ms": time_graph_ms(iters, ref, *ref_args),
    }
    for mode in ("eager", "graph"):
        f, r = out[f"fused_{mode}_ms"], out[f"torch_{mode}_ms"]
        out[f"speedup_{mode}"] = r / f if f and r else None
        print("  " + ratio_line(f, r, mode))
    return out


def bench_attention(dtype: torch.dtype, iters: int) -> list[dict]:
    rows = []
    for label, batch, grid, window, heads, head_dim in ATTENTION_SHAPES:
        n = math.prod(window)
        windows = batch * math.prod(g // w for g, w in zip(grid, window))
        q, k, v = (torch.randn(windows, n, heads * head_dim, device="cuda", dtype=dtype) for _ in range(3))
        bias = layout.shift_region_bias(grid, window, dtype, q.device).repeat(batch, 1, 1)[:, None]
        grid_dev = torch.tensor(grid, dtype=torch.int32, device="cuda")
        shape = f"{label:18s} {str(dtype):15s} R={windows} N={n} H={heads} dh={head_dim}"
        common = {"shape": label, "dtype": str(dtype).removeprefix("torch."), "grid": grid, "window": window}

        fused_args = (q, k, v, grid_dev, heads, window)
        torch_args = (q, k, v, grid, window, heads, bias)
        diff = kernels.shifted_window_attention(*fused_args).float() - torch_shifted(*torch_args).float()
        err = diff.abs().max().item()
        print(f"shifted-window attention {shape}  (max |fused - torch| {err:.2e})")
        timing = _pair(iters, kernels.shifted_window_attention, torch_shifted, fused_args, torch_args)
        rows.append(common | {"op": "shifted_window_attention", "max_abs_diff": err} | timing)

        print(f"window attention         {shape}")
        timing = _pair(iters, kernels.window_attention, torch_window, (q, k, v, heads), (q, k, v, heads))
        rows.append(common | {"op": "window_attention"} | timing)
    return rows


def bench_proxy_pool(iters: int) -> list[dict]:
    name = torch.cuda.get_device_name()
    peak = peak_bandwidth(name)
    rows = []
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for label, tokens, window, groups, channels in POOL_SHAPES:
            x = torch.randn(
                2 * tokens // math.prod(window), math.prod(window), channels, device="cuda", dtype=dtype
            )
            fused = time_graph_ms(iters, kernels.proxy_pool, x, window, groups)
            fused = fused or time_ms(iters, kernels.proxy_pool, x, window, groups)
            ref = time_graph_ms(iters, layout.proxy_pool, x, window, groups)
            ref = ref or time_ms(iters, layout.proxy_pool, x, window, groups)
            moved = x.numel() * x.element_size() * (1 + groups[1] * groups[2] / math.prod(window))
            bandwidth = moved / (fused * 1e-3)
            share = f"{bandwidth / peak:6.1%} of {peak / 1e12:.2f} TB/s peak" if peak else "(peak unknown)"
            print(
                f"proxy pool {label:28s} {str(dtype):15s}: fused {fused * 1e3:8.1f} us  "
                f"{bandwidth / 1e12:5.2f} TB/s {share}  "
                f"torch {ref * 1e3:8.1f} us  speed-up {ref / fused:5.2f}x"
            )
            rows.append(
                {
                    "shape": label, "dtype": str(dtype).removeprefix("torch."), "window": window,
                    "groups": groups, "fused_ms": fused, "torch_ms": ref, "speedup": ref / fused,
                    "bandwidth_tb_s": bandwidth / 1e12, "peak_tb_s": peak / 1e12 if peak else None,
                    "peak_share": bandwidth / peak if peak else None,
                }
            )  # fmt: skip
    return rows


def run(iters: int, build_dir: Path, arch: str | None) -> dict:
    """Build the library if needed, then every benchmark; returns the results."""
    lib = Path(os.environ.get(kernels.LIBRARY_ENV) or build_dir / "lib" / kernels.LIBRARY_NAME)
    if not lib.exists():
        print(f"building {lib} ...", flush=True)
        lib = kernels.build_library(build_dir, cuda_architectures=arch or kernels.present_architecture())
    kernels.use_library(lib)
    device = torch.cuda.get_device_name()
    print(f"device: {device}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    attention = [row for dtype in (torch.bfloat16, torch.float16) for row in bench_attention(dtype, iters)]
    return {
        "device": device,
        "library": str(lib),
        "attention": attention,
        "proxy_pool": bench_proxy_pool(iters),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--build-dir", type=Path, default=kernels.DEFAULT_BUILD_DIR)
    parser.add_argument("--arch", default=None, help="CUDA architectures to build for (default: this GPU's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_kernels.py needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    threads = torch.get_num_threads()  # the host threads that launch the kernels
    print(load_report("before", threads), flush=True)
    results = run(args.iters, args.build_dir, args.arch)
    print(load_report("after", threads))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
