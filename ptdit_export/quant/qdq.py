"""TensorRT's int8 / fp8 graphs: explicit Q/DQ written into the fp16 graph.

TensorRT (10 and 11, strongly typed) runs a GEMM in int8 or fp8 when both of its operands come
straight out of a DequantizeLinear: `x -> Q -> DQ -> MatMul <- DQ <- W_q`. So each quantized
node gets
  * its weight stored quantized (int8 or float8 e4m3fn), symmetric, one scale per output
    channel, behind a DequantizeLinear (zero point 0, as TensorRT requires);
  * its activation input behind a QuantizeLinear/DequantizeLinear pair with one scale for the
    tensor (shared by the nodes that read the same tensor, e.g. to_q/to_k/to_v), from the
    calibration's largest magnitude over every step of the schedule.
Scales carry the graph's float type; the opset becomes 19 (QuantizeLinear on fp16 and float8
types need it; TensorRT 10 parses opsets 9 to 20). Everything else is left as it was.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ptdit_export.quant.placement import constant_weight

log = logging.getLogger(__name__)

QMAX = {"int8": 127.0, "fp8": 448.0}  # largest magnitude of int8 / float8 e4m3fn
QDQ_OPSET = 19
ORT_WEIGHT_QMAX = 63.0  # "reduce range": u8 x s8 pairs fit int16 in ONNX Runtime's AVX2 kernels


def _storage(precision: str):
    import ml_dtypes
    from onnx import TensorProto

    if precision == "int8":
        return TensorProto.INT8, np.int8
    return TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn


def quantize_array(x: np.ndarray, scale: np.ndarray, precision: str) -> np.ndarray:
    """x / scale in the storage type (round-to-nearest-even, saturating), as ONNX's Q does."""
    _, np_type = _storage(precision)
    y = x.astype(np.float32) / scale.astype(np.float32)
    if precision == "int8":
        return np.clip(np.rint(y), -128, 127).astype(np.int8)
    return np.clip(y, -448.0, 448.0).astype(np_type)


def _tensor(name: str, arr: np.ndarray, onnx_type: int):
    """A raw-data initializer (int8 and float8 e4m3fn are both one byte an element)."""
    from onnx import helper

    return helper.make_tensor(name, onnx_type, arr.shape, np.ascontiguousarray(arr).tobytes(), raw=True)


def raise_opset(model: Any, version: int = QDQ_OPSET) -> None:
    """Set the default-domain opset to at least VERSION in the model and its local functions
    (the ops this project exports read the same in 18 and 19)."""
    for imports in [model.opset_import] + [f.opset_import for f in model.functions]:
        for entry in imports:
            if entry.domain in ("", "ai.onnx") and entry.version < version:
                entry.version = version


def write_qdq(
    model: Any,
    nodes: list[str],
    amax: dict[str, float],
    precision: str,
    weight_qmax: float | None = None,
    share_quantize: bool = True,
) -> Any:
    """Insert Q/DQ for NODES into MODEL (an onnx ModelProto, changed in place and returned).
    amax: activation tensor name -> calibrated largest magnitude. weight_qmax: a smaller weight
    range (63: ONNX Runtime's reduce-range int8, whose AVX2 kernels saturate 8-bit products).
    share_quantize False: one QuantizeLinear per consumer (ONNX Runtime fuses Q -> DQ -> MatMul
    into an integer matmul only when the Q feeds one node)."""
    from onnx import helper, numpy_helper

    if precision not in QMAX:
        raise ValueError(f"precision {precision!r}: the Q/DQ writer takes int8 or fp8")
    qtype, _ = _storage(precision)
    qmax = QMAX[precision]
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    wanted = set(nodes)
    new_nodes: dict[str, list] = {}  # node name -> Q/DQ nodes to put before it
    done_acts: dict[str, str] = {}
    for node in graph.node:
        if node.name not in wanted:
            continue
        weight_name, transposed = constant_weight(graph, node)
        w = numpy_helper.to_array(inits[weight_name])
        fdtype = w.dtype
        if node.input[1] != weight_name:  # a Transpose in between: fold it
            w, transposed = w.T, not transposed
        axis = 0 if transposed else 1  # the output-channel axis of the stored weight
        reduce_axis = 1 - axis
        w_amax = np.abs(w.astype(np.float32)).max(axis=reduce_axis)
        w_scale = (np.maximum(w_amax, 1e-8) / (weight_qmax or qmax)).astype(fdtype)
        stem = node.name
        graph.initializer.extend(
            [
                _tensor(
                    f"{stem}.w_q", quantize_array(w, np.expand_dims(w_scale, reduce_axis), precision), qtype
                ),
                numpy_helper.from_array(w_scale, f"{stem}.w_scale"),
                _tensor(f"{stem}.w_zp", np.zeros(w_scale.shape, _storage(precision)[1]), qtype),
            ]
        )
        before = [
            helper.make_node(
                "DequantizeLinear",
                [f"{stem}.w_q", f"{stem}.w_scale", f"{stem}.w_zp"],
                [f"{stem}.w_dq"],
                name=f"{stem}.weight_dq",
                axis=axis,
            )
        ]
        x = node.input[0]
        key = x if share_quantize else f"{x}.{stem}"
        if key not in done_acts:
            if x not in amax:
                raise ValueError(f"no calibrated range for {x} (input of {node.name}); recalibrate")
            s = np.array(max(amax[x], 1e-8) / qmax, dtype=fdtype)
            graph.initializer.extend(
                [
                    numpy_helper.from_array(s, f"{key}.a_scale"),
                    _tensor(f"{key}.a_zp", np.zeros((), _storage(precision)[1]), qtype),
                ]
            )
            before.append(
                helper.make_node(
                    "QuantizeLinear",
                    [x, f"{key}.a_scale", f"{key}.a_zp"],
                    [f"{key}.a_q"],
                    name=f"{key}.act_q",
                )
            )
            done_acts[key] = f"{key}.a_q"
        # one DequantizeLinear per consumer: ONNX Runtime fuses DQ -> MatMul only when the DQ
        # feeds that node alone (TensorRT fuses either way)
        before.append(
            helper.make_node(
                "DequantizeLinear", [f"{key}.a_q", f"{key}.a_scale", f"{key}.a_zp"], [f"{stem}.a_dq"],
                name=f"{stem}.act_dq",
            )
        )  # fmt: skip
        node.input[0] = f"{stem}.a_dq"
        new_nodes[node.name] = before
        node.input[1] = f"{stem}.w_dq"
        if node.op_type == "Gemm":  # the stored weight may now be [N, K] or [K, N]: say which
            for a in node.attribute:
                if a.name == "transB":
                    a.i = int(transposed)
    ordered = []
    for node in graph.node:
        ordered += new_nodes.get(node.name, [])
        ordered.append(node)
    graph.ClearField("node")
    graph.node.extend(ordered)
    _drop_unused(graph)
    raise_opset(model)
    log.info("%s Q/DQ: %d nodes, %d activation tensors", precision, len(new_nodes), len(done_acts))
    return model


def _drop_unused(graph: Any) -> None:
    """Remove initializers and Transpose nodes nothing reads any more (the float weights)."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Transpose" and not set(n.output) & used]
        for n in dead:
            graph.node.remove(n)
        if not dead:
            break
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(keep)
