"""The Q/DQ writer and node placement on small hand-made graphs, against independent references:
onnx.reference's QuantizeLinear for the rounding, a numpy fake-quantized matmul for the graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptdit_export.quant.placement import quantized_nodes
from ptdit_export.quant.qdq import QMAX, quantize_array, write_qdq


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_quantize_array_matches_onnx_reference(precision):
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(int.from_bytes(precision.encode(), "little") % 2**32)
    x = (rng.standard_normal((7, 5)) * rng.uniform(0.5, 20)).astype(np.float32)
    scale = rng.uniform(0.01, 0.2, size=(1, 5)).astype(np.float32)
    qtype = TensorProto.INT8 if precision == "int8" else TensorProto.FLOAT8E4M3FN
    zp = helper.make_tensor("zp", qtype, [5], [0] * 5)
    node = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], axis=1)
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [7, 5])],
        [helper.make_tensor_value_info("y", qtype, [7, 5])],
        [numpy_helper.from_array(scale[0], "s"), zp],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    got = quantize_array(x, scale, precision)
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))


def _linear_graph(rng, dtype):
    """x -> block MatMul (weight [K, N]) -> block Gemm (transB, weight [N2, N]) -> attention-like
    MatMul with itself (no constant) -> a non-block MatMul; returns (model, weights)."""
    k, n, n2 = (int(v) for v in rng.integers(4, 12, 3))
    w1 = rng.standard_normal((k, n)).astype(dtype)
    w2 = rng.standard_normal((n2, n)).astype(dtype)
    w3 = rng.standard_normal((n2, 3)).astype(dtype)
    onnx_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("MatMul", ["x", "transformer_blocks.0.attn1.to_q.weight"], ["h1"], name="mm_q"),
        helper.make_node("Gemm", ["h1", "transformer_blocks.1.ff.net.2.weight"], ["h2"], name="gemm_ff", transB=1),
        helper.make_node("Transpose", ["h2"], ["h2t"], perm=[1, 0]),
        helper.make_node("MatMul", ["h2", "h2t"], ["scores"], name="mm_scores"),
        helper.make_node("MatMul", ["h2", "proj_out.weight"], ["y"], name="mm_proj_out"),
    ]  # fmt: skip
    inits = [
        numpy_helper.from_array(w1, "transformer_blocks.0.attn1.to_q.weight"),
        numpy_helper.from_array(w2, "transformer_blocks.1.ff.net.2.weight"),
        numpy_helper.from_array(w3, "proj_out.weight"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx_type, ["m", k])],
        [helper.make_tensor_value_info("y", onnx_type, ["m", 3]), helper.make_tensor_value_info("scores", onnx_type, ["m", "m"])],
        inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), (w1, w2, w3)


def _fake(x, scale, precision):
    q = quantize_array(x, scale, precision).astype(np.float32)
    return q * scale.astype(np.float32)


@pytest.mark.parametrize("precision,dtype", [("int8", np.float32), ("int8", np.float16), ("fp8", np.float16)])
def test_write_qdq_places_and_computes(precision, dtype):
    import onnxruntime as ort

    rng = np.random.default_rng(len(precision) * 7 + np.dtype(dtype).itemsize)
    model, (w1, w2, w3) = _linear_graph(rng, dtype)
    assert quantized_nodes(model) == ["mm_q", "gemm_ff"]  # not the attention-like or final matmul
    x = rng.standard_normal((6, w1.shape[0])).astype(dtype)
    h1 = x.astype(np.float32) @ w1.astype(np.float32)
    amax = {"x": float(np.abs(x).max()) * rng.uniform(0.8, 1.2), "h1": float(np.abs(h1).max())}
    write_qdq(model, quantized_nodes(model), amax, precision)
    onnx.checker.check_model(model, full_check=True)
    counts = [n.op_type for n in model.graph.node]
    assert counts.count("QuantizeLinear") == 2 and counts.count("DequantizeLinear") == 4  # 1 DQ per use
    assert {i.name for i in model.graph.initializer}.isdisjoint(
        {"transformer_blocks.0.attn1.to_q.weight", "transformer_blocks.1.ff.net.2.weight"}
    )  # the float weights are gone

    # numpy reference: per-tensor activations, per-output-channel weights, symmetric
    qmax = QMAX[precision]

    def act(v, a):
        return _fake(v, np.array(a / qmax, np.float32).astype(dtype), precision)

    def weight(w, axis):
        s = (np.abs(w.astype(np.float32)).max(axis=1 - axis, keepdims=True) / qmax).astype(dtype)
        return _fake(w, s, precision)

    r1 = act(x, amax["x"]) @ weight(w1, 1)
    r1 = r1.astype(dtype)
    r2 = (act(r1, amax["h1"]) @ weight(w2, 0).T).astype(dtype)
    want = r2.astype(np.float32) @ w3.astype(np.float32)
    # unfused: exactly the Q/DQ semantics TensorRT implements (ONNX Runtime's fused AVX2 int8
    # kernels saturate full-range weights; the CPU graph uses 7-bit weights, tested below)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run(["y"], {"x": x})[0]
    tol = 2e-2 if dtype == np.float16 else 1e-4
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=tol, atol=tol * np.abs(want).max())
    unquantized = (x.astype(np.float32) @ w1.astype(np.float32) @ w2.astype(np.float32).T) @ w3.astype(
        np.float32
    )
    assert np.abs(got - unquantized).max() > 0  # quantization did change the result


def test_write_qdq_needs_ranges():
    model, _ = _linear_graph(np.random.default_rng(3), np.float32)
    with pytest.raises(ValueError, match="no calibrated range for x"):
        write_qdq(model, quantized_nodes(model), {}, "int8")


def test_cpu_int8_graph_fused_by_onnxruntime_matches_unfused():
    """7-bit weights: ONNX Runtime's fused int8 kernels give the Q/DQ result (no saturation)."""
    import onnxruntime as ort

    from ptdit_export.quant.qdq import ORT_WEIGHT_QMAX

    rng = np.random.default_rng(5)
    model, (w1, w2, w3) = _linear_graph(rng, np.float32)
    x = (rng.standard_normal((6, w1.shape[0])) * 3).astype(np.float32)
    amax = {"x": float(np.abs(x).max()), "h1": float(np.abs(x @ w1).max())}
    write_qdq(model, quantized_nodes(model), amax, "int8", weight_qmax=ORT_WEIGHT_QMAX)
    outputs = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        outputs.append(session.run(["y"], {"x": x})[0])
    unfused, fused = outputs
    np.testing.assert_allclose(fused, unfused, rtol=1e-4, atol=1e-4 * np.abs(unfused).max())
