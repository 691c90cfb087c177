"""Parity tolerances, per stage and precision: relative max error = max|a - b| / max|b|.

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
    # Full denoising loop, final latents, ONNX Runtime fp32 engine vs the PyTorch loop.
    ("loop", "fp32"): 1e-3,
    # The same with an fp16 graph against the fp32 PyTorch loop: measured 7.5e-2 (mean absolute
    # 2.6e-4) on the demo's pictures, 90 held-out prompts x seeds, 30 steps, every picture
    # judged the same (docs/demo.md); errors compound over steps, hence the 2x margin only.
    ("loop", "fp16"): 1.5e-1,
}


def tolerance(stage: str, precision: str) -> float:
    try:
        return TOLERANCES[(stage, precision)]
    except KeyError:
        known = ", ".join(f"{s}/{p}" for s, p in TOLERANCES)
        raise KeyError(f"no tolerance written down for {stage}/{precision}; known: {known}") from None
