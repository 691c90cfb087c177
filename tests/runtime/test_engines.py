"""Backends: the ONNX Runtime engine (dtype casts, I/O binding), bfloat16 bits, backend choice,
and the TensorRT backend's behaviour where TensorRT is absent (it is on every machine here)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from ptdit_runtime.engines import load_engine, resolve_backend
from ptdit_runtime.engines.dtypes import bfloat16_bits, float32_from_bfloat16_bits
from ptdit_runtime.engines.ort import OnnxRuntimeEngine


def mixed_dtype_graph(path):
    """y = float(a: fp16) + float(b: bf16) + float(c: int32) * scale[:, None]; 2-D, dynamic rows."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["a"], ["af"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["af", "bf"], ["ab"]),
        helper.make_node("Unsqueeze", ["s", "one"], ["s2"]),
        helper.make_node("Mul", ["cf", "s2"], ["cs"]),
        helper.make_node("Add", ["ab", "cs"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mixed",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT16, ["n", 4]),
         helper.make_tensor_value_info("b", TensorProto.BFLOAT16, ["n", 4]),
         helper.make_tensor_value_info("c", TensorProto.INT32, ["n", 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def feeds(rows: int = 3, seed: int = 0):
    g = np.random.default_rng(seed)
    return {
        "a": g.standard_normal((rows, 4)).astype(np.float32),
        "b": g.standard_normal((rows, 4)).astype(np.float32) * 100,
        "c": g.integers(-5, 5, (rows, 4)).astype(np.int64),
        "s": g.standard_normal(rows).astype(np.float32),
    }


def expected(f):
    a = torch.from_numpy(f["a"]).half().float()
    b = torch.from_numpy(f["b"]).bfloat16().float()
    return (a + b + torch.from_numpy(f["c"]).float() * torch.from_numpy(f["s"])[:, None]).numpy()


@pytest.mark.parametrize("io_binding", [False, True])
def test_onnxruntime_engine_casts_to_graph_dtypes(tmp_path, io_binding):
    engine = OnnxRuntimeEngine(mixed_dtype_graph(tmp_path / "m.onnx"), provider="cpu", io_binding=io_binding)
    assert {n: s.dtype for n, s in engine.inputs.items()} == {
        "a": "float16", "b": "bfloat16", "c": "int32", "s": "float32"
    }  # fmt: skip
    assert engine.inputs["a"].shape == (None, 4)
    for rows in (1, 5):
        f = feeds(rows, seed=rows)
        np.testing.assert_array_equal(engine.run(f)["y"], expected(f))


def test_io_binding_keeps_constant_inputs_and_reuploads_changed_ones(tmp_path):
    engine = OnnxRuntimeEngine(mixed_dtype_graph(tmp_path / "m.onnx"), provider="cpu", io_binding=True)
    f = feeds()
    engine.run(f, constant=("s",))
    bound = engine._bound["s"][1]
    f2 = dict(f, a=f["a"] + 1)  # same "s" object: its bound value is reused
    np.testing.assert_array_equal(engine.run(f2, constant=("s",))["y"], expected(f2))
    assert engine._bound["s"][1] is bound and engine._bound["a"][1] is not None
    f3 = dict(f2, s=f2["s"] * 2)  # a new "s" array is uploaded again, even when declared constant
    np.testing.assert_array_equal(engine.run(f3, constant=("s",))["y"], expected(f3))
    assert engine._bound["s"][1] is not bound


def test_feed_errors_name_the_inputs(tmp_path):
    engine = OnnxRuntimeEngine(mixed_dtype_graph(tmp_path / "m.onnx"), provider="cpu")
    f = feeds()
    with pytest.raises(ValueError, match=r"missing \['s'\]"):
        engine.run({k: v for k, v in f.items() if k != "s"})
    with pytest.raises(ValueError, match=r"input 'a' has shape \(3, 5\)"):
        engine.run(dict(f, a=np.zeros((3, 5), np.float32)))


def test_bfloat16_bits_round_to_nearest_even_like_torch():
    g = np.random.default_rng(0)
    x = np.concatenate([
        g.standard_normal(10000).astype(np.float32) * 10.0 ** g.integers(-30, 30, 10000),
        np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, 1.00390625, 1.01171875, 1e-40], np.float32),
    ])  # fmt: skip
    want = torch.from_numpy(x).bfloat16().view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bfloat16_bits(x), want)
    np.testing.assert_array_equal(
        float32_from_bfloat16_bits(want), torch.from_numpy(x).bfloat16().float().numpy()
    )
    assert np.isnan(float32_from_bfloat16_bits(bfloat16_bits(np.array([np.nan], np.float32))))[0]


def test_backend_choice(tmp_path):
    (tmp_path / "engine.plan").write_bytes(b"not an engine")
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(RuntimeError, match="only a TensorRT engine"):
            resolve_backend(tmp_path, "auto")
    (tmp_path / "model.onnx").write_bytes(b"")
    want = "tensorrt" if importlib.util.find_spec("tensorrt") else "onnxruntime"
    assert resolve_backend(tmp_path, "auto") == want
    (tmp_path / "engine.plan").unlink()
    assert resolve_backend(tmp_path, "auto") == "onnxruntime"
    with pytest.raises(ValueError, match="not one of auto"):
        resolve_backend(tmp_path, "openvino")


def test_missing_provider_and_files_name_the_fix(tmp_path):
    import onnxruntime as ort

    with pytest.raises(FileNotFoundError, match="export the component first"):
        load_engine(tmp_path, "onnxruntime", provider="cpu")
    mixed_dtype_graph(tmp_path / "model.onnx")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
            load_engine(tmp_path, "onnxruntime", provider="cuda")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_backend_without_tensorrt_says_what_to_install(tmp_path):
    (tmp_path / "engine.plan").write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"pip install 'ptdit-export\[tensorrt\]'"):
        load_engine(tmp_path, "tensorrt")


def test_tensorrt_helpers_that_need_no_gpu(tmp_path, monkeypatch):
    from ptdit_runtime.engines import check_manifest, onnx_model_path
    from ptdit_runtime.engines.trt import PLUGIN_ENV, host_dtype, plugin_library_path

    assert host_dtype("bfloat16") == np.uint16 and host_dtype("float16") == np.float16
    (tmp_path / "manifest.json").write_text(json.dumps({"backend": "onnxruntime"}))
    with pytest.raises(ValueError, match="built for onnxruntime"):
        check_manifest(tmp_path, "tensorrt")
    monkeypatch.delenv(PLUGIN_ENV, raising=False)
    assert plugin_library_path(None) is None
    with pytest.raises(FileNotFoundError, match=PLUGIN_ENV):
        plugin_library_path(tmp_path / "libptdit_plugins.so")
    library = tmp_path / "libptdit_plugins.so"
    library.write_bytes(b"")
    monkeypatch.setenv(PLUGIN_ENV, str(library))
    assert plugin_library_path(None) == library
    assert onnx_model_path(tmp_path) == tmp_path / "model.onnx"
    (tmp_path / "model.optimized.onnx").write_bytes(b"")
    assert onnx_model_path(tmp_path) == tmp_path / "model.optimized.onnx"
