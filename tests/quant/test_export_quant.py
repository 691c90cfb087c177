"""Quantized export of `tiny` through the CLI, parity against the PyTorch fp32 model, and the
TensorRT operator check of every graph we hand TensorRT (portable, plugin, int8, fp8).

CI cost: two tiny exports with calibration (about 1 min on 2 idle cores)."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

from ptdit_export.builder.tensorrt_ops import support_list, tensorrt_problems
from ptdit_export.cli import main
from ptdit_export.export.plugin_ops import strip_functions

pytestmark = pytest.mark.slow
CALIB = ["--seed", "3"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    out = {}
    for precision, graph in (("int8", "portable"), ("fp8", "plugin")):
        folder = root / f"{precision}-{graph}"
        args = ["export", "--model", "tiny", "--precision", precision, "--graph", graph, "--out", str(folder)]
        result = CliRunner().invoke(main, args + CALIB)
        assert result.exit_code == 0, result.output
        assert "PASS" in result.output and "FAIL" not in result.output, result.output
        out[precision] = folder / "transformer"
    return out


def test_quantized_graphs_have_qdq_on_block_linears_only(exported):
    for precision, folder in exported.items():
        model = onnx.load(str(folder / "model.onnx"))
        facts = json.loads((folder / "quant.json").read_text())
        assert facts["precision"] == precision and facts["feeds"] > 0
        dq_into_matmul = [
            n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1].endswith(".w_dq")
        ]
        # tiny: 2 blocks x 24 linears (4 attentions x q/k/v/out, 2 visual/proxy linears, 2 MLP)
        assert len(dq_into_matmul) == facts["quantized_nodes"] == 48
        qtype = onnx.TensorProto.INT8 if precision == "int8" else onnx.TensorProto.FLOAT8E4M3FN
        weights = [i for i in model.graph.initializer if i.name.endswith(".w_q")]
        assert weights and all(i.data_type == qtype for i in weights)


def test_every_tensorrt_graph_passes_the_operator_check(exported):
    fp8 = exported["fp8"]
    graphs = {
        "portable fp32": onnx.load(str(exported["int8"] / "model.float.onnx")),
        "plugin fp16": strip_functions(onnx.load(str(fp8 / "model.float.onnx"))),
        "fp8": strip_functions(onnx.load(str(fp8 / "model.onnx"))),
    }
    from ptdit_export.model.presets import PRESETS
    from ptdit_export.quant import quantized_onnx_from_onnx
    from ptdit_export.quant.calibrate import CalibrationSettings, ort_denoiser, sample_feeds

    feeds = sample_feeds(
        ort_denoiser(fp8 / "model.float.onnx"),
        PRESETS["tiny"].config,
        "tiny",
        CalibrationSettings(prompts=2, steps=2),
    )
    int8 = fp8 / "int8.onnx"
    quantized_onnx_from_onnx(fp8 / "model.float.onnx", int8, "int8", feeds, "tensorrt")
    graphs["int8 (TensorRT)"] = strip_functions(onnx.load(str(int8)))
    for name, model in graphs.items():
        assert tensorrt_problems(model) == [], name


def test_operator_check_finds_what_tensorrt_lacks():
    from onnx import TensorProto, helper

    assert support_list()["commit"] and support_list()["operators"]["MatMul"]
    nodes = [
        helper.make_node("NonMaxSuppression", ["b", "s"], ["i"], name="nms"),  # supported
        helper.make_node("Compress", ["x", "c"], ["h"], name="compress", axis=0),  # not imported
        helper.make_node("Softmax", ["xi"], ["sm"], name="softmax_int"),  # wrong dtype
        helper.make_node("Thing", ["x"], ["t"], name="custom", domain="other"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 1, 4]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("xi", TensorProto.INT32, [2, 3]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, [2])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("h", "sm", "t")],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("other", 1)]
    )
    problems = tensorrt_problems(model)
    assert any("opset 21" in p for p in problems)
    assert any(p.startswith("compress") for p in problems)
    assert any(p.startswith("softmax_int") and "INT32" in p for p in problems)
    assert any(p.startswith("custom") for p in problems)
    assert not any(p.startswith("nms") for p in problems)


def test_onnxruntime_fuses_every_quantized_linear_of_the_cpu_graph(exported, tmp_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(exported["int8"] / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("MatMulIntegerToFloat") == 48 and "DequantizeLinear" not in ops


def test_calibration_options_of_the_export_command(tmp_path):
    """--calibration-prompts/-count/-steps reach the calibration (recorded in quant.json); a prompts
    file for a model without a text encoder is one `Error:` line naming --text-encoder."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on a blue background\na green square on a white background, left\n")
    folder = tmp_path / "demo-int8"
    args = ["export", "--model", "demo", "--precision", "int8", "--out", str(folder), "--no-verify"]
    calib = ["--calibration-prompts", str(prompts), "--calibration-count", "2", "--calibration-steps", "3"]
    result = CliRunner().invoke(main, args + calib)
    assert result.exit_code == 0, result.output
    facts = json.loads((folder / "transformer" / "quant.json").read_text())
    assert {"prompts": 2, "steps": 3, "prompts_file": str(prompts)}.items() <= facts["calibration"].items()
    assert facts["feeds"] == 3  # one guided call (both captions) per step

    bad = ["export", "--model", "tiny", "--precision", "int8", "--out", str(tmp_path / "t"), "--no-verify"]
    result = CliRunner().invoke(main, bad + ["--calibration-prompts", str(prompts)])
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--text-encoder" in errors[0], result.output
