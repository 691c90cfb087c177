"""ONNX Runtime (CPU) vs PyTorch eager: latency of one denoiser step, as a ratio from one run.

Both run the same model (random weights), shape and thread count; runs are interleaved
(eager, ORT, eager, ORT, ...) so machine noise hits both alike, and the medians are compared.

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
    args = ap.parse_args()

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

        runs = {"eager (sdpa)": lambda: eager("sdpa"), "onnxruntime": lambda: session.run(None, feeds)}
        for fn in runs.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        want = eager("sdpa").numpy()
        got = session.run(None, feeds)[0]
        err = float(np.abs(got - want).max() / np.abs(want).max())

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["eager (sdpa)"] / med["onnxruntime"]
    print(
        f"# {date.today()} {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, onnxruntime {ort.__version__}"
    )
    print(
        f"# model {args.model}, {args.resolution}x{args.resolution} px (latent {latent}), batch {args.batch}, text {args.text_len}, {args.graph} graph fp32"
    )
    for k, v in med.items():
        print(f"{k:<14} median {v * 1e3:8.1f} ms over {args.repeats} interleaved runs")
    print(f"speed-up of ONNX Runtime over eager: {ratio:.2f}x (goal >= 1.3x); parity rel err {err:.1e}")


if __name__ == "__main__":
    main()
