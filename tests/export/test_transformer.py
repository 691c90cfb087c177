"""Exported transformer graphs: parity with PyTorch from one dynamic file, precisions, plugin
nodes, validation and atomic writes. Exports are shared per module (each takes ~30 s)."""

from __future__ import annotations

import collections
import dataclasses
import json

import onnx
import pytest

from ptdit_export import ops
from ptdit_export.export import transformer as T
from ptdit_export.export.source import model_from_source
from ptdit_export.export.verify import verify_dir
from ptdit_export.tolerances import tolerance

TINY = {"preset": "tiny", "seed": 3}


def export(tmp_path_factory, name, source=TINY, **settings):
    out = tmp_path_factory.mktemp(name)
    model = model_from_source(source)
    s = T.ExportSettings(**({"latent_height": 16, "latent_width": 16} | settings))
    T.onnx_from_model(model, out, s, source)
    return out


# traced at 16 x 16, promised from one window (8) to 4x the traced size: verify checks inside these
SIZES = {"height_profile": T.Profile(8, 16, 64), "width_profile": T.Profile(8, 16, 64)}


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    return export(tmp_path_factory, "portable", graph="portable", **SIZES)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    return export(tmp_path_factory, "plugin", graph="plugin", **SIZES)


# (batch, frames, latent height, latent width, text length): square, non-square both ways,
# batch 1 and 2 (verify pads the last caption of a batch), another text length, 4 sizes.
IMAGE_SHAPES = [(2, 1, 16, 16, 16), (1, 1, 24, 16, 5), (2, 1, 16, 32, 9), (3, 1, 32, 24, 30), (2, 1, 8, 8, 2)]


@pytest.mark.parametrize("graph", ["portable", "plugin"])
def test_fp32_parity_at_many_shapes_from_one_dynamic_file(graph, request):
    folder = request.getfixturevalue(graph)
    checks = verify_dir(folder, IMAGE_SHAPES)
    for c in checks:
        assert c.passed and c.tolerance == tolerance("onnx", "fp32") == 1e-4, c


def test_video_frames_are_dynamic(tmp_path_factory):
    folder = export(
        tmp_path_factory,
        "video",
        {"preset": "tiny-video", "seed": 1},
        graph="plugin",
        latent_height=8,
        latent_width=8,
        frames=4,
        frames_profile=T.Profile(2, 4, 16),
    )
    checks = verify_dir(folder, [(2, 4, 8, 8, 6), (1, 6, 8, 12, 4), (2, 2, 12, 8, 6)])
    assert all(c.passed for c in checks), checks


def test_fp16_graph_keeps_norms_and_residual_in_fp32(tmp_path_factory):
    folder = export(tmp_path_factory, "fp16", precision="fp16", graph="portable", **SIZES)
    model = onnx.shape_inference.infer_shapes(onnx.load(folder / "transformer" / "model.onnx"))
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)
    }
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert inputs["hidden_states"] == inputs["encoder_hidden_states"] == onnx.TensorProto.FLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(types.get(n.input[0]) == onnx.TensorProto.FLOAT for n in norms)
    half_matmuls = [
        n
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm") and types.get(n.input[0]) == onnx.TensorProto.FLOAT16
    ]
    assert half_matmuls, "projections should compute in fp16"
    checks = verify_dir(folder, IMAGE_SHAPES[:3])
    assert all(c.passed and c.tolerance == tolerance("onnx", "fp16") for c in checks), checks


def test_bf16_graph_runs_on_the_onnx_reference_evaluator(tmp_path_factory):
    folder = export(tmp_path_factory, "bf16", precision="bf16", graph="plugin")
    inputs = {
        i.name: i.type.tensor_type.elem_type
        for i in onnx.load(folder / "transformer" / "model.onnx").graph.input
    }
    assert inputs["hidden_states"] == onnx.TensorProto.BFLOAT16
    checks = verify_dir(folder, [(2, 1, 16, 16, 8)])
    assert all(c.passed and c.runner == "onnx.reference" for c in checks), checks


def test_plugin_graph_nodes_follow_the_shared_op_description(plugin):
    model = onnx.load(plugin / "transformer" / "model.onnx")
    spec = ops.load_spec()[1]
    custom = [n for n in model.graph.node if n.domain == ops.DOMAIN]
    layers = model_from_source(TINY).config.num_layers
    assert sorted(n.op_type for n in custom) == sorted(list(spec) * layers)
    kinds = {
        onnx.AttributeProto.INT: "int",
        onnx.AttributeProto.INTS: "ints",
        onnx.AttributeProto.FLOAT: "float",
    }
    for n in custom:
        assert {a.name: kinds[a.type] for a in n.attribute} == spec[n.op_type].attributes
    assert {f.name for f in model.functions} == set(spec)
    assert any(o.domain == ops.DOMAIN and o.version == 1 for o in model.opset_import)


def test_files_validation_and_index(portable):
    root = portable / "transformer"
    model = onnx.load(root / "model.onnx")
    assert model.ir_version <= 13 and {o.domain: o.version for o in model.opset_import}[""] == 18
    assert [i.name for i in model.graph.input] == list(T.INPUT_NAMES)
    assert [o.name for o in model.graph.output] == [T.OUTPUT_NAME]
    assert (root / "config.json").is_file() and (root / "export.json").is_file()
    assert json.loads((portable / "model_index.json").read_text())["transformer"] == "transformer"
    T.validate_onnx(root / "model.onnx")


def test_static_export_fixes_every_dimension(tmp_path_factory):
    folder = export(tmp_path_factory, "static", dynamic=False, batch=1, text_len=8)
    model = onnx.load(folder / "transformer" / "model.onnx")
    for i in model.graph.input:
        assert all(d.dim_value > 0 for d in i.type.tensor_type.shape.dim), i.name
    assert all(c.passed for c in verify_dir(folder))


def test_crash_during_export_leaves_the_previous_folder(tmp_path, monkeypatch):
    model = model_from_source(TINY)
    s = T.ExportSettings(latent_height=16, latent_width=16, dynamic=False)
    T.onnx_from_model(model, tmp_path, s, TINY)
    before = (tmp_path / "transformer" / "model.onnx").read_bytes()

    def boom(path):
        raise RuntimeError("simulated crash while validating")

    monkeypatch.setattr(T, "validate_onnx", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        T.onnx_from_model(model, tmp_path, dataclasses.replace(s, batch=1), TINY)
    assert (tmp_path / "transformer" / "model.onnx").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_bad_settings_name_the_fix():
    model = model_from_source(TINY)
    with pytest.raises(ValueError, match="multiple of patch\\*window = 8"):
        T._dynamic_shapes(model.config, T.ExportSettings(latent_height=20, latent_width=16))
    with pytest.raises(ValueError, match="--precision"):
        T.ExportSettings(precision="int8")
    with pytest.raises(ValueError, match="min <= opt <= max"):
        T.Profile(4, 2, 8)


def test_large_models_use_external_data(tmp_path, monkeypatch):
    """Over the protobuf limit the weights go to model.onnx.data; the file still validates and runs.
    (The limit is lowered here; docs/benchmarks.md has the real 1.1B export.)"""
    monkeypatch.setattr(T, "EXTERNAL_DATA_BYTES", 1024)
    model = model_from_source(TINY)
    T.onnx_from_model(
        model, tmp_path, T.ExportSettings(latent_height=16, latent_width=16, dynamic=False), TINY
    )
    root = tmp_path / "transformer"
    assert (root / "model.onnx.data").stat().st_size > 0
    graph = onnx.load(root / "model.onnx", load_external_data=False).graph
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    assert all(c.passed for c in verify_dir(tmp_path))


def test_verify_command_prints_errors_and_fails_beyond_tolerance(portable, monkeypatch):
    from click.testing import CliRunner

    from ptdit_export.cli import main

    ok = CliRunner().invoke(main, ["verify", str(portable), "--shape", "1", "1", "16", "24", "5"])
    assert ok.exit_code == 0 and "PASS" in ok.output and "max rel" in ok.output
    monkeypatch.setattr("ptdit_export.export.verify.tolerance", lambda stage, precision: 1e-12)
    bad = CliRunner().invoke(main, ["verify", str(portable), "--shape", "1", "1", "16", "24", "5"])
    assert bad.exit_code == 1 and "FAIL" in bad.output


def test_verify_defaults_to_shapes_inside_the_recorded_profiles_and_names_the_file(portable):
    from click.testing import CliRunner

    from ptdit_export.cli import main

    profiles = json.loads((portable / "transformer" / "export.json").read_text())["profiles"]
    shapes = [c.shape for c in verify_dir(portable)]
    assert len(shapes) == 3 and len({s[0] for s in shapes}) > 1 and len({s[4] for s in shapes}) > 1
    for shape in shapes:
        for value, dim in zip(shape, ("batch", "frames", "latent_height", "latent_width", "text_len")):
            assert profiles[dim]["min"] <= value <= profiles[dim]["max"], (shape, dim)
    onnx_file = str(portable / "transformer" / "model.onnx")
    out = CliRunner().invoke(main, ["verify", str(portable)])
    assert out.exit_code == 0, out.output
    assert f"PASS at 3 shapes: {onnx_file}" in out.output


@pytest.mark.parametrize(
    "shape, problem",
    [
        ("1 1 10 10 5", "latent height 10 is not a multiple of 8"),
        ("9 1 16 16 5", "batch 9 is outside 1..8"),
        ("2 1 16 72 5", "latent width 72 is outside 8..64"),
        ("2 2 16 16 5", "frames 2 is outside 1..1"),
    ],
)
def test_verify_command_rejects_shapes_outside_the_profiles_in_one_line(portable, shape, problem):
    from click.testing import CliRunner

    from ptdit_export.cli import main

    out = CliRunner().invoke(main, ["verify", str(portable), "--shape", *shape.split()])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in out.output
    assert problem in lines[0]
    assert "batch 1..8, frames 1, latent height 8..64 (multiples of 8)" in lines[0]
    assert "text length 1..512" in lines[0] and str(portable / "transformer" / "model.onnx") in lines[0]


def _ops(path):
    graph = onnx.load(path, load_external_data=False).graph
    return collections.Counter(n.op_type for n in graph.node), graph


@pytest.mark.parametrize("graph", ["portable", "plugin"])
def test_one_block_trace_is_the_full_trace_stamped_out(graph, request, tmp_path_factory):
    """The default export traces block 0 and copies it (stitch.py); against tracing every block
    (`--trace full`) it has the same compute nodes, no markers, every block's own weights, and
    the same outputs."""
    import numpy as np
    import onnxruntime as ort

    stitched = request.getfixturevalue(graph)
    full = export(tmp_path_factory, f"full-{graph}", graph=graph, trace="full", **SIZES)
    (a, ga), (b, _) = _ops(stitched / "transformer" / "model.onnx"), _ops(full / "transformer" / "model.onnx")
    compute = ("MatMul", "Gemm", "LayerNormalization", "Softmax", "Conv", *ops.REFERENCES)
    assert {k: a[k] for k in compute} == {k: b[k] for k in compute}
    assert not [n for n in ga.node if n.domain == "ptdit.stitch"]
    names = {t.name for t in ga.initializer}
    for layer in range(model_from_source(TINY).config.num_layers):
        assert any(n.startswith(f"transformer_blocks.{layer}.") for n in names), layer
    assert not [n for n in ga.node if n.op_type == "Transpose" and set(n.input) <= names]

    model = model_from_source(TINY)
    s = T.ExportSettings(latent_height=16, latent_width=16)
    for shape in [(2, 1, 16, 16, 16), (3, 1, 24, 8, 5)]:
        b_, f, h, w, n = shape
        x, t, text, mask = T.example_inputs(model.config, s, b_, h, w, f, n)
        feeds = {
            "hidden_states": x.numpy(),
            "timestep": t.numpy(),
            "encoder_hidden_states": text.numpy(),
            "encoder_attention_mask": mask.numpy(),
        }
        outs = [
            ort.InferenceSession(
                str(d / "transformer" / "model.onnx"), providers=["CPUExecutionProvider"]
            ).run(None, feeds)[0]
            for d in (stitched, full)
        ]
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_stamping_reports_a_trace_without_markers():
    from ptdit_export.export import stitch

    proto = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    with pytest.raises(stitch.StitchError, match="BlockEdge"):
        stitch.stamp_blocks(proto, 3)


def test_trace_cache_reuses_the_structure_with_other_weights(tmp_path, monkeypatch, caplog):
    """A second export of the same architecture binds its own weights into the cached one-block
    trace (parity against its own PyTorch model); a damaged cache entry is traced again."""
    import logging

    monkeypatch.setenv("PTDIT_EXPORT_CACHE_DIR", str(tmp_path / "cache"))
    s = T.ExportSettings(latent_height=16, latent_width=16, dynamic=False)
    T.onnx_from_model(model_from_source(TINY), tmp_path / "a", s, TINY)
    (entry,) = (tmp_path / "cache").glob("*.onnx")
    assert not [t for t in onnx.load(entry).graph.initializer if t.name.startswith("transformer_blocks")]

    other = {"preset": "tiny", "seed": 9}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        T.onnx_from_model(model_from_source(other), tmp_path / "b", s, other)
    assert "from the trace cache" in caplog.text and "tracing block 0" not in caplog.text
    assert all(c.passed for c in verify_dir(tmp_path / "b"))

    entry.write_bytes(b"not a model")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        T.onnx_from_model(model_from_source(other), tmp_path / "c", s, other)
    assert "ignoring the cached trace" in caplog.text and "tracing block 0" in caplog.text
    assert all(c.passed for c in verify_dir(tmp_path / "c"))


def test_trace_cache_key_changes_with_structure_not_weights():
    from ptdit_export.export.trace_cache import trace_key

    cfg = model_from_source(TINY).config.to_dict()
    s = T.ExportSettings().to_dict()
    assert trace_key(cfg, s) == trace_key(cfg | {"num_layers": 7}, s | {"trace": "full"})
    assert trace_key(cfg, s) != trace_key(cfg | {"num_heads": 1}, s)
    assert trace_key(cfg, s) != trace_key(cfg, s | {"precision": "fp16"})


def test_export_interrupted_is_one_error_line_and_keeps_the_previous_folder(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ptdit_export.cli import main

    args = ["export", "--model", "tiny", "--seed", "3", "--static", "--out", str(tmp_path), "--no-verify"]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = (tmp_path / "transformer" / "model.onnx").read_bytes()

    def ctrl_c(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "validate_onnx", ctrl_c)  # Ctrl-C half-way through writing the folder
    result = CliRunner().invoke(main, [*args[:4], "4", *args[5:]])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: interrupted; nothing half-written was kept in {tmp_path}: run the command again"
    ]
    assert (tmp_path / "transformer" / "model.onnx").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
