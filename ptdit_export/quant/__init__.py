"""Quantized transformer graphs: int8 (ONNX Runtime CPU, TensorRT) and fp8 (TensorRT on Hopper).

    quantized_onnx_from_onnx(float_path, out_path, precision, feeds, target)

turns an exported float graph into a Q/DQ graph; `quantize_exported` does the whole stage for an
exported folder (calibrate with the sampler, quantize, validate, quant.json beside). Which float
graph a quantized precision starts from: `float_precision`. See docs/quantization.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from ptdit_export.quant.calibrate import CalibrationSettings, ort_denoiser, sample_feeds

log = logging.getLogger(__name__)

QUANTIZED = ("int8", "fp8")
FLOAT_COPY = "model.float.onnx"
__all__ = [
    "QUANTIZED",
    "CalibrationSettings",
    "float_precision",
    "quantize_exported",
    "quantized_onnx_from_onnx",
]


def float_precision(precision: str, target: str) -> str:
    """The float graph PRECISION is written over: fp32 for ONNX Runtime's CPU int8 (its
    quantizer and int8 kernels take fp32), fp16 for TensorRT's; float precisions unchanged."""
    if precision not in QUANTIZED:
        return precision
    if precision == "fp8" and target == "onnxruntime":
        raise ValueError("--precision fp8 needs TensorRT on a Hopper GPU; use --precision int8 on the CPU")
    return "fp32" if target == "onnxruntime" else "fp16"


def quantized_onnx_from_onnx(
    float_path: Path, out_path: Path, precision: str, feeds: list[dict[str, np.ndarray]], target: str
) -> dict:
    """Write the PRECISION graph of FLOAT_PATH to OUT_PATH, calibrated on FEEDS; returns facts.
    target "onnxruntime": weights in a 7-bit range (ONNX Runtime's AVX2 int8 kernels saturate
    full-range products); "tensorrt": full range. Both symmetric, zero points 0."""
    import onnx

    from ptdit_export.quant.placement import quantized_nodes

    if precision not in QUANTIZED:
        raise ValueError(f"precision {precision!r}: quantized precisions are {', '.join(QUANTIZED)}")
    model = onnx.load(str(float_path))
    nodes = quantized_nodes(model)
    if not nodes:
        raise ValueError(f"{float_path}: no transformer-block linear found to quantize")
    from ptdit_export.quant.qdq import ORT_WEIGHT_QMAX, write_qdq
    from ptdit_export.quant.ranges import activation_amax

    by_name = {n.name: n for n in model.graph.node}
    amax = activation_amax(float_path, feeds, [by_name[n].input[0] for n in nodes])
    weight_qmax = ORT_WEIGHT_QMAX if target == "onnxruntime" else None
    write_qdq(model, nodes, amax, precision, weight_qmax, share_quantize=target != "onnxruntime")
    onnx.save_model(model, str(out_path))
    method = (
        f"ptdit_export.quant.qdq: {precision} symmetric, per-channel weights"
        f"{' (7-bit range for ONNX Runtime)' if weight_qmax else ''}, per-tensor activations"
    )
    return {"precision": precision, "target": target, "quantized_nodes": len(nodes), "method": method}


def quantize_exported(
    out_dir: str | Path,
    model,
    model_arg: str,
    precision: str,
    target: str,
    calibration: CalibrationSettings | None = None,
    vae_scale: int = 8,
) -> Path:
    """Replace OUT_DIR/transformer/model.onnx (the float export) by its PRECISION graph; the float
    graph stays beside as model.float.onnx, the facts in quant.json. Returns the graph's path."""
    from ptdit_export.export.transformer import validate_onnx

    calibration = calibration or CalibrationSettings()
    folder = Path(out_dir) / "transformer"
    path, float_path = folder / "model.onnx", folder / FLOAT_COPY
    shutil.move(path, float_path)
    feeds = sample_feeds(ort_denoiser(float_path), model.config, model_arg, calibration, vae_scale)
    tmp = folder / ".model.quant.partial.onnx"
    facts = quantized_onnx_from_onnx(float_path, tmp, precision, feeds, target)
    validate_onnx(tmp)
    tmp.replace(path)
    facts |= {"float_graph": FLOAT_COPY, "calibration": dataclasses.asdict(calibration), "feeds": len(feeds)}
    (folder / "quant.json").write_text(json.dumps(facts, indent=2) + "\n")
    log.info("quantized %s to %s (%d nodes)", path, precision, facts["quantized_nodes"])
    return path
