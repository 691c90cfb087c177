"""One denoising step, single process vs window-sharded over P processes, in one run.

    python benchmarks/bench_parallel.py                       # CPU: P = 1 and 2 gloo processes, 1 thread each
    python benchmarks/bench_parallel.py --device cuda --parts 1 2 4 8   # P GPUs (NCCL), one per process
    python benchmarks/bench_parallel.py --preset tiny --tokens 256 --repeats 2   # smoke test

A step is one transformer forward at batch 2 (one prompt with classifier-free guidance), as the
runtime's loop runs it on a slab. P = 1 is the plain single-process PTDiT (the baseline, timed
in the same run under the same conditions: a spawned process, the same thread count); P > 1
is `ShardedPTDiT.forward_slab` on every rank (the step time is the slowest rank's median).
Ratios are P = 1 time / P time. Each rank also reports the bytes its counted collectives sent
per step, checked against `parallel.traffic`. What ran where (CPU model, torch, threads,
devices) is printed and written with the figures to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def rank_step(rank: int, args: dict) -> dict:
    """Time one step on this rank (module level: run in spawned processes)."""
    import torch

    from ptdit_export.model import PTDiT
    from ptdit_export.parallel import Comm, ShardedPTDiT

    parts, device = args["parts"], args["device"]
    comm = Comm.from_env("nccl" if device == "cuda" else "gloo") if parts > 1 else Comm()
    if device == "cuda" and parts == 1:
        comm.device = torch.device("cuda", 0)
    dev = comm.device
    dtype = getattr(torch, args["dtype"])
    torch.manual_seed(0)
    model = PTDiT.from_config(args["preset"]).to(dev, dtype).eval()
    cfg = model.config
    side = args["side"]  # tokens per side
    hh = side * cfg.patch_size
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, cfg.in_channels, 1, hh, hh, generator=g).to(dev)
    t = torch.full((2,), 500.0, device=dev)
    text = torch.randn(2, 120, cfg.caption_channels or cfg.hidden_size, generator=g).to(dev)
    mask = torch.ones(2, 120, dtype=torch.long, device=dev)
    if parts > 1:
        sharded = ShardedPTDiT(model, comm)
        plan = sharded.plan(1, hh, hh)
        x = plan.slice_rows(x, 3, cfg.patch_size).contiguous()

        def step():
            return sharded.forward_slab(x, t, text, mask, hh)
    else:

        def step():
            return model(x, t, text, mask)

    times = []
    with torch.inference_mode():
        for i in range(args["warmup"] + args["repeats"]):
            comm.barrier()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            comm.reset()
            t0 = time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= args["warmup"]:
                times.append(time.perf_counter() - t0)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    return {
        "rank": comm.rank,
        "median_s": statistics.median(times),
        "sent_per_step": dict(comm.sent),
        "where": f"{where}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
    }


def main() -> None:
    from ptdit_export.model.presets import load_config
    from ptdit_export.parallel import traffic, valid_parts
    from ptdit_export.parallel.launch import spawn

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", help="model preset (default small: width 384)")
    ap.add_argument("--tokens", type=int, nargs="+", default=[4096], help="tokens per picture (squares)")
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2], help="process counts; 1 is the baseline")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument("--out", type=Path, default=Path("out/bench_parallel.json"))
    opts = ap.parse_args()
    from ptdit_export.bench.load import load_report

    print(load_report("before", max(opts.threads * max(opts.parts), 1)), flush=True)

    cfg = load_config(opts.preset)
    parts = sorted(set([1, *opts.parts]))
    elem = 4 if opts.dtype == "float32" else 2
    rows, report = [], {"preset": opts.preset, "device": opts.device, "dtype": opts.dtype, "runs": []}
    print(f"{opts.preset} (hidden {cfg.hidden_size}, {cfg.num_layers} blocks), {opts.device}, {opts.dtype}")
    for tokens in opts.tokens:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise SystemExit(f"Error: --tokens {tokens} is not a square; use e.g. {side * side}")
        base = None
        for p in parts:
            if p not in valid_parts((1, side, side), cfg.window):
                print(f"{tokens} tokens: P={p} skipped (valid: {valid_parts((1, side, side), cfg.window)})")
                continue
            args = dict(
                parts=p, device=opts.device, dtype=opts.dtype, preset=opts.preset, side=side,
                warmup=opts.warmup, repeats=opts.repeats,
            )  # fmt: skip
            res = spawn(rank_step, p, (args,), timeout=opts.timeout, threads=opts.threads)
            step = max(r["median_s"] for r in res)
            base = step if p == 1 else base
            sent = res[0]["sent_per_step"]
            want = traffic.per_block(cfg, (1, side, side), p, 2, elem)
            assert sent.get("proxies", 0) + sent.get("halo", 0) == want.ours * cfg.num_layers, (sent, want)
            run = {
                "tokens": tokens, "parts": p, "step_s": step, "speedup": base / step if base else None,
                "sent_per_step_mib": sum(sent.values()) / 2**20,
                "ulysses_per_step_mib": want.ulysses * cfg.num_layers / 2**20, "where": res[0]["where"],
            }  # fmt: skip
            report["runs"].append(run)
            rows.append(
                f"| {tokens:,} | {p} | {step * 1e3:.1f} | {run['speedup']:.2f} | "
                f"{run['sent_per_step_mib']:.2f} | {run['ulysses_per_step_mib']:.2f} |"
            )
    print("| tokens | P | step (ms) | P=1 time / P time | sent per rank per step (MiB) | Ulysses (MiB) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("ran on:", report["runs"][0]["where"] if report["runs"] else "-")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {opts.out}")
    print(load_report("after", max(opts.threads * max(opts.parts), 1)))


if __name__ == "__main__":
    main()
