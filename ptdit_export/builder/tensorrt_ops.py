"""Check an ONNX graph against TensorRT's ONNX operator support list (tensorrt_ops.json).

`tensorrt_problems(model)` lists, one line each, every node whose op TensorRT's parser does not
import or whose input dtypes it does not take, Q/DQ nodes that break TensorRT's explicit
quantization rules (zero points must be 0), custom-domain nodes that are not ptdit plugins,
and a default-domain opset outside the parser's range. Empty: TensorRT can parse the graph.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SPEC_PATH = Path(__file__).with_name("tensorrt_ops.json")
QDQ = ("QuantizeLinear", "DequantizeLinear")


@cache
def support_list() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def _trt_type(elem_type: int) -> str:
    from onnx import TensorProto

    names = {
        TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16",
        TensorProto.INT32: "INT32", TensorProto.INT64: "INT64", TensorProto.INT8: "INT8",
        TensorProto.UINT8: "UINT8", TensorProto.BOOL: "BOOL", TensorProto.DOUBLE: "FP32",  # the parser casts DOUBLE down
        TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.INT4: "INT4",
    }  # fmt: skip
    return names.get(elem_type, TensorProto.DataType.Name(elem_type))


def _types(model: Any) -> dict[str, int]:
    """tensor name -> ONNX element type, after shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    types |= {i.name: i.data_type for i in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def tensorrt_problems(model: Any, plugin_ops: set[str] | None = None) -> list[str]:
    """Problems TensorRT's ONNX parser would have with MODEL (an onnx ModelProto)."""
    from onnx import numpy_helper

    from ptdit_export.ops import load_spec

    spec = support_list()
    ops, quantized = spec["operators"], set(spec["quantized_types"])
    domain, plugins = load_spec()
    plugin_ops = set(plugins) if plugin_ops is None else plugin_ops
    problems = []
    lo, hi = spec["opsets"]
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and not lo <= entry.version <= hi:
            problems.append(f"opset {entry.version}: TensorRT's parser takes {lo}..{hi}")
    types = _types(model)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        where = f"{node.name or node.output[0]} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            if node.domain != domain or node.op_type not in plugin_ops:
                problems.append(f"{where}: custom op {node.domain}::{node.op_type} is no ptdit plugin")
            continue
        allowed = ops.get(node.op_type, "missing")
        if allowed in (None, "missing"):
            problems.append(f"{where}: not imported by TensorRT's ONNX parser")
            continue
        names = [n for n in node.input if n]
        checked = names[:1] if node.op_type in QDQ else names
        for name in checked:
            t = _trt_type(types.get(name, 0)) if name in types else None
            if t is not None and t not in allowed:
                problems.append(f"{where}: input {name} is {t}; TensorRT takes {', '.join(allowed)}")
            if t in quantized and node.op_type != "DequantizeLinear":
                problems.append(f"{where}: {t} tensor {name} outside a Q/DQ pair")
        if node.op_type in QDQ and len(node.input) > 2 and node.input[2]:
            zp = inits.get(node.input[2])
            if zp is None or np.any(numpy_helper.to_array(zp).astype(np.float32) != 0):
                problems.append(f"{where}: zero point must be a constant 0 for TensorRT")
    return problems
