"""Where an export's time and memory go: torch.export, decomposition, translation to ONNX, the
optimiser, stamping, writing, checker + shape inference, parity run, each timed in-process with
the peak resident memory reached by its end.

    python benchmarks/profile_export.py --model tiny --trace full
    python benchmarks/profile_export.py --model qihoo-t2x-1.1b --precision fp16 --size 64 --no-verify

Timers wrap the library functions (torch.export.export, torch.onnx's decomposition and
translation, onnxscript's optimiser, our stitch/validate/verify); nested time is not counted
twice (decomposition runs inside torch.onnx's export, so each row is its own part).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import resource
import tempfile
import time
from collections import defaultdict


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--graph", default="portable")
    ap.add_argument("--trace", default="one-block", choices=["one-block", "full"])
    ap.add_argument("--size", type=int, default=None, help="traced latent size (default: the model's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()

    t_start = time.perf_counter()
    import onnxscript._framework_apis.torch_2_11 as apis
    import torch
    from torch.onnx._internal.exporter import _core

    from ptdit_export.bench.load import load_report
    from ptdit_export.export import stitch, transformer, verify
    from ptdit_export.export.source import model_from_source, source_of

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    times: dict[str, float] = defaultdict(float)
    peaks: dict[str, float] = {}
    stack: list[list[float]] = []

    @contextlib.contextmanager
    def timed(name: str):
        stack.append([0.0])
        t = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - t
            inner = stack.pop()[0]
            times[name] += spent - inner
            peaks[name] = peak_gb()
            if stack:
                stack[-1][0] += spent

    def wrap(owner, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        def wrapper(*a, **k):
            with timed(name):
                return fn(*a, **k)

        setattr(owner, attr, wrapper)

    wrap(torch.export, "export", "torch.export (trace to ATen)")
    wrap(_core, "_prepare_exported_program_for_export", "decomposition (run_decompositions)")
    wrap(_core, "_exported_program_to_onnx_program", "translation to ONNX")
    wrap(apis, "optimize", "onnxscript optimiser (folding, rewrites)")
    wrap(stitch, "stamp_blocks", "stamping out blocks")
    wrap(stitch, "fold_weights", "folding weight transposes")
    wrap(stitch, "write_model", "writing (weights converted, streamed)")
    wrap(transformer, "validate_onnx", "checker + shape inference")
    times["imports"] = time.perf_counter() - t_start
    peaks["imports"] = peak_gb()

    print(load_report("before", args.threads), flush=True)
    source = source_of(args.model, 0)
    with timed("loading the PyTorch model"):
        model = model_from_source(source)
    size = args.size or max(
        model.config.sample_size, 2 * model.config.patch_size * model.config.compress_ratios[1]
    )
    settings = transformer.ExportSettings(
        precision=args.precision, graph=args.graph, latent_height=size, latent_width=size, trace=args.trace
    )
    with tempfile.TemporaryDirectory() as tmp:
        with timed("other export work"):
            transformer.onnx_from_model(model, tmp, settings, source)
        del model
        if args.verify:
            with timed("parity run (verify, 3 shapes)"):
                checks = verify.verify_dir(tmp)
            assert all(c.passed for c in checks), checks
    total = time.perf_counter() - t_start
    print(f"\n{args.model} {args.precision} {args.graph}, trace {args.trace}, latent {size}: {total:.1f} s")
    print(f"{'stage':<44} {'seconds':>8} {'share':>6} {'peak RSS GB':>12}")
    for name, spent in times.items():
        print(f"{name:<44} {spent:8.1f} {spent / total:6.0%} {peaks.get(name, 0):12.2f}")
    print(f"{'total':<44} {total:8.1f} {'':>6} {peak_gb():12.2f}")
    print(load_report("after", args.threads))


if __name__ == "__main__":
    main()
