"""Fused CUDA kernels vs the PyTorch path, at the released model's shapes (needs a GPU).

    python benchmarks/bench_kernels.py [--iters 100] [--build-dir build] [--arch 90]

1. Shifted-window attention: the fused kernel (gathers, masks and scatters by index arithmetic)
   against what the model does in PyTorch: roll + re-window q, k, v, SDPA with the region mask
   (built once, outside the timing, which favours PyTorch), roll the output back.
2. Window attention (no shift): fused kernel against re-shaping + SDPA.
3. Proxy pooling: achieved memory bandwidth as a fraction of the device's peak.

Times come from CUDA events, twice: "eager" (calls in a loop, so host launch costs show when
they exceed GPU time) and "graph" (the same calls replayed from a CUDA graph: GPU time only).
Builds build/lib/libptdit_kernels.so with CMake first if it is missing.
"""

from __future__ import annotations

import argparse
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
    ("H100", 3.35e12),  # SXM5 (HBM3)
    ("H200", 4.8e12),
]

# (label, batch, token grid (F, h, w), window, heads, head dim)
ATTENTION_SHAPES = [
    ("image 1024px", 2, (1, 64, 64), (1, 8, 8), 16, 72),
    ("video 16x256px", 2, (16, 32, 32), (4, 8, 8), 16, 72),
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


def bench_attention(dtype: torch.dtype, iters: int) -> None:
    for label, batch, grid, window, heads, head_dim in ATTENTION_SHAPES:
        n = math.prod(window)
        rows = batch * math.prod(g // w for g, w in zip(grid, window))
        q, k, v = (torch.randn(rows, n, heads * head_dim, device="cuda", dtype=dtype) for _ in range(3))
        bias = layout.shift_region_bias(grid, window, dtype, q.device).repeat(batch, 1, 1)[:, None]
        grid_dev = torch.tensor(grid, dtype=torch.int32, device="cuda")
        shape = f"{label:15s} {str(dtype):15s} R={rows} N={n} H={heads} dh={head_dim}"

        fused_args = (q, k, v, grid_dev, heads, window)
        torch_args = (q, k, v, grid, window, heads, bias)
        diff = kernels.shifted_window_attention(*fused_args).float() - torch_shifted(*torch_args).float()
        print(f"shifted-window attention {shape}  (max |fused - torch| {diff.abs().max().item():.2e})")
        eager = [
            time_ms(iters, kernels.shifted_window_attention, *fused_args),
            time_ms(iters, torch_shifted, *torch_args),
        ]
        graph = [
            time_graph_ms(iters, kernels.shifted_window_attention, *fused_args),
            time_graph_ms(iters, torch_shifted, *torch_args),
        ]
        print("  " + ratio_line(*eager, "eager"))
        print("  " + ratio_line(*graph, "graph"))

        print(f"window attention         {shape}")
        eager = [
            time_ms(iters, kernels.window_attention, q, k, v, heads),
            time_ms(iters, torch_window, q, k, v, heads),
        ]
        graph = [
            time_graph_ms(iters, kernels.window_attention, q, k, v, heads),
            time_graph_ms(iters, torch_window, q, k, v, heads),
        ]
        print("  " + ratio_line(*eager, "eager"))
        print("  " + ratio_line(*graph, "graph"))


def bench_proxy_pool(iters: int) -> None:
    name = torch.cuda.get_device_name()
    peak = peak_bandwidth(name)
    cases = [  # (label, rows, window, groups, channels): released image and video shapes, batch 2
        ("image 1024px", 2 * 64, (1, 8, 8), (1, 1, 1), 1152),
        ("video 16x256px", 2 * 64, (4, 8, 8), (1, 1, 1), 1152),
        ("image, 2x2 proxies", 2 * 64, (1, 8, 8), (1, 2, 2), 1152),
    ]
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for label, rows, window, groups, channels in cases:
            x = torch.randn(rows, math.prod(window), channels, device="cuda", dtype=dtype)
            fused = time_graph_ms(iters, kernels.proxy_pool, x, window, groups)
            fused = fused or time_ms(iters, kernels.proxy_pool, x, window, groups)
            ref = time_graph_ms(iters, layout.proxy_pool, x, window, groups)
            ref = ref or time_ms(iters, layout.proxy_pool, x, window, groups)
            moved = x.numel() * x.element_size() * (1 + groups[1] * groups[2] / math.prod(window))
            bandwidth = moved / (fused * 1e-3)
            share = f"{bandwidth / peak:6.1%} of {peak / 1e12:.2f} TB/s peak" if peak else "(peak unknown)"
            print(
                f"proxy pool {label:18s} {str(dtype):15s}: fused {fused * 1e3:8.1f} us  "
                f"{bandwidth / 1e12:5.2f} TB/s {share}  "
                f"torch {ref * 1e3:8.1f} us  speed-up {ref / fused:5.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--build-dir", type=Path, default=kernels.DEFAULT_BUILD_DIR)
    parser.add_argument("--arch", default=None, help="CUDA architectures to build for (default: this GPU's)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_kernels.py needs an NVIDIA GPU (torch.cuda.is_available() is False)")

    lib = Path(os.environ.get(kernels.LIBRARY_ENV) or args.build_dir / "lib" / kernels.LIBRARY_NAME)
    if not lib.exists():
        major, minor = torch.cuda.get_device_capability()
        print(f"building {lib} ...", flush=True)
        lib = kernels.build_library(args.build_dir, cuda_architectures=args.arch or f"{major}{minor}")
    os.environ[kernels.LIBRARY_ENV] = str(lib)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    threads = torch.get_num_threads()  # the host threads that launch the kernels
    print(load_report("before", threads), flush=True)
    for dtype in (torch.float16, torch.bfloat16):
        bench_attention(dtype, args.iters)
    bench_proxy_pool(args.iters)
    print(load_report("after", threads))


if __name__ == "__main__":
    main()
