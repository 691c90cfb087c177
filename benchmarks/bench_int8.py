"""int8 vs fp32 on ONNX Runtime (CPU): one denoiser step, and the demo's whole `generate`.

1. One guided denoiser step of MODEL (default `small`, random weights) at RESOLUTION px: the
   fp32 portable graph against its int8 Q/DQ graph (ptdit_export.quant, calibrated with the
   sampler on random caption embeddings), interleaved fp32, int8, fp32, ... in one process;
   the ratio of medians is printed.
2. The demo's whole pipeline (T5, 30 steps, guidance 4, decoder) from `ptdit-export build
   --precision fp32` and `--precision int8` folders, interleaved the same way.

    python benchmarks/bench_int8.py --threads 2                  # both parts (~10 min idle)
    python benchmarks/bench_int8.py --skip-demo --model tiny --resolution 128 --repeats 2  # smoke
    python benchmarks/bench_int8.py --skip-demo --profile       # also where the step's time goes

Prints the load average before and after: figures from a loaded machine are indicative only.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path


def interleaved(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, run in turn REPEATS times after one warm-up each."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def step_benchmark(args, work: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    from ptdit_export.export.source import model_from_source
    from ptdit_export.export.transformer import ExportSettings, example_inputs, onnx_from_model
    from ptdit_export.quant import CalibrationSettings, quantize_exported

    source = {"preset": args.model, "seed": 0}
    model = model_from_source(source)
    latent = args.resolution // 8
    settings = ExportSettings(latent_height=latent, latent_width=latent, batch=2, text_len=args.text_len)
    onnx_from_model(model, work, settings, source)
    calib = CalibrationSettings(prompts=args.calib_prompts, steps=args.calib_steps, batch=1)
    int8_path = quantize_exported(work, model, args.model, "int8", "onnxruntime", calib)
    fp32_path = int8_path.with_name("model.float.onnx")

    def session(path: Path, profile: str | None = None):
        opts = ort.SessionOptions()
        if profile:
            opts.enable_profiling, opts.profile_file_prefix = True, str(work / profile)
            opts.optimized_model_filepath = str(work / f"{profile}.optimized.onnx")
            opts.log_severity_level = 3  # not the warning about saving an optimised graph
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    x, t, e, m = example_inputs(model.config, settings)
    feeds = {"hidden_states": x.numpy(), "timestep": t.numpy(), "encoder_hidden_states": e.numpy(),
             "encoder_attention_mask": m.numpy()}  # fmt: skip
    fp32, int8 = session(fp32_path), session(int8_path)
    a, b = fp32.run(None, feeds)[0], int8.run(None, feeds)[0]
    err = float(np.abs(a - b).max() / np.abs(a).max())
    med = interleaved(
        {"fp32": lambda: fp32.run(None, feeds), "int8": lambda: int8.run(None, feeds)}, args.repeats
    )
    print(
        f"step  {args.model} {args.resolution} px, batch 2, {args.threads} threads: fp32 {med['fp32'] * 1e3:.0f} ms, "
        f"int8 {med['int8'] * 1e3:.0f} ms -> int8 {med['fp32'] / med['int8']:.2f}x faster "
        f"(int8 vs fp32 output: relative max error {err:.2e})"
    )
    if args.profile:
        shares = {
            name: op_shares(session(path, name), work / f"{name}.optimized.onnx", feeds)
            for name, path in (("fp32", fp32_path), ("int8", int8_path))
        }
        print_profile(shares, med)


GEMM_OPS = {
    "MatMul",
    "Gemm",
    "FusedMatMul",
    "FusedGemm",
    "MatMulIntegerToFloat",
    "QLinearMatMul",
    "MatMulInteger",
}
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def op_shares(sess, optimized: Path, feeds: dict, runs: int = 2) -> dict[str, float]:
    """Share of the node time per kind over RUNS profiled runs (ONNX Runtime's profiler): a GEMM
    with a constant weight in the optimised graph counts as "linear", Q/DQ as "linear Q/DQ",
    every other node under its op type (attention's matmuls are "MatMul")."""
    import json
    from collections import Counter

    import onnx

    graph = onnx.load(str(optimized), load_external_data=False).graph
    consts = {i.name for i in graph.initializer}
    kind = {}
    for node in graph.node:
        if node.op_type in GEMM_OPS and any(i in consts for i in node.input[1:]):
            kind[node.name] = "linear"
        elif node.op_type in QUANT_OPS:
            kind[node.name] = "linear Q/DQ"
    for _ in range(runs):
        sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    took: Counter = Counter()
    for ev in events:
        name = ev.get("name", "")
        if ev.get("cat") == "Node" and name.endswith("_kernel_time"):
            took[kind.get(name[: -len("_kernel_time")], ev["args"]["op_name"])] += ev["dur"]
    total = sum(took.values())
    return {op: us / total for op, us in took.most_common()}


def print_profile(shares: dict[str, dict[str, float]], med: dict[str, float]) -> None:
    """Per op type: share of each graph's node time and ms per step; the linear layers' share of
    fp32 and the speed-up bound it sets (Amdahl: the rest of the step is unchanged by int8)."""
    ops = sorted(
        {op for s in shares.values() for op in s}, key=lambda op: -max(s.get(op, 0) for s in shares.values())
    )
    print(f"{'op type':24s} {'fp32 %':>7s} {'fp32 ms':>8s} {'int8 %':>7s} {'int8 ms':>8s}")
    for op in ops[:14]:
        cells = [
            f"{100 * shares[k].get(op, 0):7.1f} {1e3 * med[k] * shares[k].get(op, 0):8.0f}"
            for k in ("fp32", "int8")
        ]
        print(f"{op:24s} {cells[0]} {cells[1]}")
    linear = {k: s.get("linear", 0) + s.get("linear Q/DQ", 0) for k, s in shares.items()}
    rest = {k: med[k] * (1 - linear[k]) for k in shares}
    print(
        f"linear layers (GEMMs with a constant weight, and their Q/DQ): fp32 {100 * linear['fp32']:.0f}% "
        f"({1e3 * med['fp32'] * linear['fp32']:.0f} ms), int8 {100 * linear['int8']:.0f}% "
        f"({1e3 * med['int8'] * linear['int8']:.0f} ms); the rest {1e3 * rest['fp32']:.0f} / {1e3 * rest['int8']:.0f} ms; "
        f"int8 step bound with free linears: {med['fp32'] / rest['int8']:.2f}x"
    )


def demo_benchmark(args, work: Path) -> None:
    from ptdit_export.builder.pipeline import BuildSettings, build
    from ptdit_export.builder.profiles import ShapeRange
    from ptdit_runtime.pipeline import Pipeline

    pipes = {}
    for precision, given in zip(("fp32", "int8"), args.engines or (None, None)):
        out = Path(given) if given else work / f"demo-{precision}"
        if not given:
            shapes = ShapeRange(text_len=(1, 16, 16))
            build(
                "demo",
                out,
                BuildSettings(backend="onnxruntime", precision=precision, shapes=shapes, vae_scale=2),
            )
        pipes[precision] = Pipeline.from_dir(out, backend="onnxruntime", provider="cpu", threads=args.threads)
    prompts = ["a red circle on a blue background", "a white square on a black background, left"] * 2

    def run(p):
        return lambda: p(prompts, steps=30, guidance=4.0, seed=0, output="float")

    med = interleaved({k: run(p) for k, p in pipes.items()}, args.repeats)
    print(
        f"demo  generate, 4 prompts, 30 steps: fp32 {med['fp32']:.2f} s, int8 {med['int8']:.2f} s -> "
        f"int8 {med['fp32'] / med['int8']:.2f}x faster"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--text-len", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calib-prompts", type=int, default=2)
    ap.add_argument("--calib-steps", type=int, default=4)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument(
        "--engines", nargs=2, metavar=("FP32_DIR", "INT8_DIR"), help="built demo folders to reuse"
    )
    ap.add_argument("--skip-step", action="store_true")
    ap.add_argument(
        "--profile", action="store_true", help="also print where the step's time goes, per op type"
    )
    args = ap.parse_args()
    import onnxruntime as ort

    from ptdit_export.bench.load import load_report

    print(load_report("before", args.threads))
    print(f"{platform.processor() or platform.machine()}, onnxruntime {ort.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_step:
            step_benchmark(args, Path(tmp) / "step")
        if not args.skip_demo:
            demo_benchmark(args, Path(tmp))
    print(load_report("after", args.threads))


if __name__ == "__main__":
    main()
