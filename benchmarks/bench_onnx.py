"""PyTorch eager vs torch.compile vs ONNX Runtime (CPU): latency of one denoiser step, as
ratios against eager from one run.

All three run the same model (random weights), shape and thread count; runs are interleaved
(eager, compiled, ORT, eager, ...) so machine noise hits all alike, and the medians are
compared. torch.compile (inductor) compiles the same step once, before the timed runs (its
compile time is printed apart); `--no-compile` leaves it out. The load average is printed
before and after, with a warning when it is above the thread count.

    python benchmarks/bench_onnx.py --model small --resolution 512 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import date


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--resolution", type=int, default=512, help="pixels (square); latent = /8")
    ap.add_argument("--batch", type=int, default=2, help="graph batch (CFG: 2 per prompt)")
    ap.add_argument("--text-len", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--graph", default="portable", choices=["portable", "plugin"])
    ap.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=True, help="time torch.compile"
    )
    args = ap.parse_args()

    from ptdit_export.bench.load import load_report

    print(load_report("before", args.threads), flush=True)

    import numpy as np
    import onnxruntime as ort
    import torch

    from ptdit_export.export.source import model_from_source
    from ptdit_export.export.transformer import ExportSettings, example_inputs, onnx_from_model
    from ptdit_export.model.attention import use_backend

    torch.set_num_threads(args.threads)
    source = {"preset": args.model, "seed": 0}
    model = model_from_source(source)
    latent = args.resolution // 8
    settings = ExportSettings(
        graph=args.graph, latent_height=latent, latent_width=latent, batch=args.batch, text_len=args.text_len
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = onnx_from_model(model, tmp, settings, source)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        x, t, e, m = example_inputs(model.config, settings)
        feeds = {
            "hidden_states": x.numpy(),
            "timestep": t.numpy(),
            "encoder_hidden_states": e.numpy(),
            "encoder_attention_mask": m.numpy(),
        }

        def eager(backend: str):
            with torch.inference_mode(), use_backend(backend):
                return model(x, t, e, m)

        runs = {"eager (sdpa)": lambda: eager("sdpa")}
        compile_s = None
        if args.compile:
            compiled_model = torch.compile(model)

            def compiled():
                with torch.inference_mode(), use_backend("sdpa"):
                    return compiled_model(x, t, e, m)

            t0 = time.perf_counter()
            compiled()  # compiles
            compile_s = time.perf_counter() - t0
            runs["torch.compile"] = compiled
        runs["onnxruntime"] = lambda: session.run(None, feeds)
        for fn in runs.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        want = eager("sdpa").numpy()
        errors = {}
        for name, fn in runs.items():
            if name != "eager (sdpa)":
                got = np.asarray(fn()[0] if name == "onnxruntime" else fn())
                errors[name] = float(np.abs(got - want).max() / np.abs(want).max())

    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["eager (sdpa)"]
    print(
        f"# {date.today()} {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, onnxruntime {ort.__version__}"
    )
    print(
        f"# model {args.model}, {args.resolution}x{args.resolution} px (latent {latent}), batch {args.batch}, text {args.text_len}, {args.graph} graph fp32"
    )
    for k, v in med.items():
        extra = (
            f", speed-up over eager {base / v:.2f}x, parity rel err {errors[k]:.1e}" if k in errors else ""
        )
        print(f"{k:<14} median {v * 1e3:8.1f} ms over {args.repeats} interleaved runs{extra}")
    if compile_s is not None:
        print(f"torch.compile: first call (compilation) {compile_s:.1f} s, not in the medians")
    print(f"speed-up of ONNX Runtime over eager: {base / med['onnxruntime']:.2f}x (goal >= 1.3x)")
    print(load_report("after", args.threads))


if __name__ == "__main__":
    main()
