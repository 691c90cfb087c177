"""Parity tolerances, per stage and precision: relative max error = max|a - b| / max|b|
(the demo's "loop-pictures" stage alone bounds the mean absolute error; reason beside it).

Each value is the bound the project promises, set from measured errors (docs/benchmarks.md)
with the margin stated beside it; changing one needs a measurement, never a failing test.
"""

from __future__ import annotations

# (stage, precision) -> relative max error bound
TOLERANCES: dict[tuple[str, str], float] = {
    # PyTorch model vs the official PTDiTDiffuser, same dtype: measured 5e-7 (fp32), 0 (bf16/fp16).
    ("reference", "fp32"): 1e-4,
    # ONNX graph (ONNX Runtime CPU) vs PyTorch fp32, both graphs: measured <= 4e-6 on tiny/small.
    ("onnx", "fp32"): 1e-4,
    # fp16 graph vs the fp32 PyTorch model; ONNX Runtime's CPU kernels also accumulate some
    # matmuls in fp16. Measured 1.6e-2 on tiny, see docs/benchmarks.md for the 28-layer model.
    ("onnx", "fp16"): 5e-2,
    # bf16 graph (8-bit mantissa, run by onnx.reference: ONNX Runtime CPU has no bf16 Gemm) vs
    # the fp32 PyTorch model: measured 2.7e-2 on tiny.
    ("onnx", "bf16"): 8e-2,
    # Q/DQ graphs (docs/quantization.md) vs the fp32 PyTorch model on verify's random inputs,
    # calibrated with the sampler (random caption embeddings for untrained presets).
    # int8: the ONNX Runtime CPU graph (7-bit weights, fused int8 kernels): measured 5.4e-2 on
    # tiny (seed 3), 2x margin. fp8: e4m3 Q/DQ over the fp16 plugin graph, run by ONNX Runtime's
    # float8 Q/DQ kernels (exact fake quantization): measured 1.07e-1 on tiny, 2x margin.
    ("onnx", "int8"): 1e-1,
    ("onnx", "fp8"): 2e-1,
    # Full denoising loop, final latents, ONNX Runtime fp32 engine vs the PyTorch loop, random
    # weights (tiny, 30 steps, guidance 4): measured 7.2e-7.
    ("loop", "fp32"): 1e-3,
    # The trained demo's whole pipeline, engine vs PyTorch pictures in [0, 1]: MEAN ABSOLUTE
    # error, not relative max. Its sampler amplifies rounding at a few shape-edge pixels, so the
    # max error is chaotic: PyTorch against itself with each step's output perturbed by 1e-6 of
    # its largest value already differs by 6.1e-3 at one pixel (docs/demo.md). Bounds from
    # PyTorch's own loop, not from the engine: fp32, each step perturbed by 1e-5 (2.5x the largest
    # one-step engine error, 4e-6): 1.27e-5 -> 1e-5 (engine measured 1.15e-6); fp16, the PyTorch
    # transformer itself run in fp16: 1.48e-3 -> 1.5e-3 (engine measured 4.2e-4). Every picture
    # must also be judged the same.
    ("loop-pictures", "fp32"): 1e-5,
    ("loop-pictures", "fp16"): 1.5e-3,
}


def tolerance(stage: str, precision: str) -> float:
    try:
        return TOLERANCES[(stage, precision)]
    except KeyError:
        known = ", ".join(f"{s}/{p}" for s, p in TOLERANCES)
        raise KeyError(f"no tolerance written down for {stage}/{precision}; known: {known}") from None
