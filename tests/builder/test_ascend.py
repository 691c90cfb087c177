"""The Ascend ATC path, proven by what feeds ATC (no CANN here): the ATC-bound graph (CANN's op
list at its opset, no custom domain, static where it must be, parity with PyTorch on ONNX Runtime
at every compiled shape), the exact atc command and --dynamic_dims mapping, the op check's
failures, and the runner: nothing claims an .om without atc; a stand-in `atc` script on PATH (a
test of the runner, not of ATC) is run and reported. The tests marked slow share two real exports
of `tiny` (static, and dynamic for --dynamic_dims; about 10 + 30 s of CPU); the rest drive the
same code with small hand-built graphs and run in about a second."""

from __future__ import annotations

import json
import os
import stat

import onnx
import pytest
from onnx import TensorProto, helper

from ptdit_export.builder import ascend as A
from ptdit_export.builder import atc_graph as G
from ptdit_export.export.verify import verify_dir
from ptdit_export.model import load_config
from ptdit_export.tolerances import tolerance

TINY = load_config("tiny")  # patch 2, window 4: sizes step by 8 latents = 64 px
FP32 = tolerance("onnx", "fp32")


def path_without_atc() -> str:
    return os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not os.path.exists(os.path.join(d, "atc"))
    )


FAKE_ATC = """#!/bin/sh
# stand-in for CANN's atc: records its arguments, writes <--output>.om, exits 0
out=""
: > atc_args.txt
for a in "$@"; do
  printf '%s\\n' "$a" >> atc_args.txt
  case "$a" in --output=*) out="${a#--output=}" ;; esac
done
printf 'not a real offline model\\n' > "$out.om"
echo "ATC run success (stand-in)"
"""


def fake_atc(bin_dir, body: str = FAKE_ATC) -> str:
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "atc"
    exe.write_text(body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return f"{bin_dir}{os.pathsep}{path_without_atc()}"


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    """One static shape: 1 prompt with CFG (batch 2), 128 x 64 px (latent 16 x 8), 8 tokens; no atc."""
    out = tmp_path_factory.mktemp("ascend_static")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", path_without_atc())
        report = A.build_ascend("tiny", out, height=128, width=64, text_len=8, seed=4)
    return out, report


# three profiles: 1 prompt 64x64, 1 prompt 128x64, 2 prompts 64x128 (px) -> batch 2/2/4, latent 8x8/16x8/8x16
DYNAMIC = "64x64;128x64;2@64x128"
GRAPH_SHAPES = [(2, 1, 8, 8, 8), (2, 1, 16, 8, 8), (4, 1, 8, 16, 8)]  # (batch, frames, h, w, text)


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    """--dynamic_dims profiles, bf16 mode, built with a stand-in atc on PATH (tests the runner)."""
    out = tmp_path_factory.mktemp("ascend_dynamic")
    kw = dict(dynamic_dims=DYNAMIC, text_len=8, seed=5, precision="bf16", soc_version="Ascend910B3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", fake_atc(tmp_path_factory.mktemp("bin")))
        report = A.build_ascend("tiny", out, **kw)
        again = A.build_ascend("tiny", out, **kw)
    return out, report, again


def load(folder):
    return onnx.load(str(folder / "transformer" / "model.onnx"))


def settings_json(folder) -> dict:
    return json.loads((folder / "transformer" / A.SETTINGS).read_text())


# ------------------------------------------------------------------------- ATC-bound graphs


def assert_atc_ready(model) -> None:
    counts = G.check_atc_graph(model)
    assert counts["LayerNormalization"] > 0 and counts["MatMul"] > 0
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 18)]
    assert not model.functions and all(n.domain in ("", "ai.onnx") for n in model.graph.node)


@pytest.mark.slow  # uses the module's real exports
def test_static_graph_is_atc_ready_fixed_and_matches_pytorch(static):
    out, report = static
    model = load(out)
    assert_atc_ready(model)
    assert G.static_problems(model) == []
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {
        "hidden_states": [2, 4, 1, 16, 8],
        "timestep": [2],
        "encoder_hidden_states": [2, 8, 64],
        "encoder_attention_mask": [2, 8],
    }
    (check,) = verify_dir(out, [(2, 1, 16, 8, 8)])
    assert check.passed and check.tolerance == FP32 == 1e-4, check
    assert settings_json(out)["atc"]["dynamic_dims"] is None


@pytest.mark.slow  # uses the module's real exports
def test_dynamic_graph_is_atc_ready_and_matches_pytorch_at_every_profile(dynamic):
    out, _, _ = dynamic
    model = load(out)
    assert_atc_ready(model)
    assert G.static_problems(model)  # symbolic batch / sizes / text length: one file for all profiles
    checks = verify_dir(out, GRAPH_SHAPES)
    assert len(checks) == 3 and all(c.passed and c.tolerance == FP32 for c in checks), checks


def substitute(input_shape: str, dynamic_dims: str) -> list[dict[str, tuple[int, ...]]]:
    """ATC's documented reading: the values of one profile replace the -1s in --input_shape, in order."""
    profiles = []
    for group in dynamic_dims.split(";"):
        values = iter(int(v) for v in group.split(","))
        shapes = {}
        for item in input_shape.split(";"):
            name, dims = item.split(":")
            shapes[name] = tuple(next(values) if d == "-1" else int(d) for d in dims.split(","))
        assert next(values, None) is None, "a profile has more values than -1s"
        profiles.append(shapes)
    return profiles


@pytest.mark.slow  # uses the module's real exports
def test_dynamic_dims_are_exact_for_every_profile(dynamic):
    out, _, _ = dynamic
    info = settings_json(out)
    atc = info["atc"]
    # batch differs (2, 2, 4), so does each spatial size; text length (8) is the same everywhere
    assert atc["input_shape"] == (
        "hidden_states:-1,4,1,-1,-1;timestep:-1;encoder_hidden_states:-1,8,64;encoder_attention_mask:-1,8"
    )
    assert atc["dynamic_dims"] == "2,8,8,2,2,2;2,16,8,2,2,2;4,8,16,4,4,4"
    assert [tuple(a) for a in atc["dynamic_axes"]] == [
        ("hidden_states", 0, "batch"),
        ("hidden_states", 3, "latent_height"),
        ("hidden_states", 4, "latent_width"),
        ("timestep", 0, "batch"),
        ("encoder_hidden_states", 0, "batch"),
        ("encoder_attention_mask", 0, "batch"),
    ]
    want = [
        {
            "hidden_states": (b, 4, f, h, w),
            "timestep": (b,),
            "encoder_hidden_states": (b, n, 64),
            "encoder_attention_mask": (b, n),
        }
        for b, f, h, w, n in GRAPH_SHAPES
    ]
    assert substitute(atc["input_shape"], atc["dynamic_dims"]) == want
    assert [{k: tuple(v) for k, v in p.items()} for p in info["profiles"]] == want
    assert "--precision_mode_v2=mixed_bfloat16" in atc["argv"] and "--soc_version=Ascend910B3" in atc["argv"]


# -------------------------------------------------------------------------------- command


def contract_inputs(b="batch", h="8*h_windows", w="8*w_windows", n="text_len"):
    return [
        ("hidden_states", [b, 4, 1, h, w]),
        ("timestep", [b]),
        ("encoder_hidden_states", [b, n, 64]),
        ("encoder_attention_mask", [b, n]),
    ]


def test_atc_command_is_exact_for_several_option_sets():
    one = (G.AtcShape(2, 1, 16, 16, 200),)
    shapes = G.atc_inputs(contract_inputs(), one)
    line = A.shell_command(A.atc_command("model.onnx", A.AscendSettings(shapes=one), shapes))
    assert line == (
        "atc --model=model.onnx --framework=5 --output=model_partial --soc_version=Ascend910B "
        "--input_shape='hidden_states:2,4,1,16,16;timestep:2;encoder_hidden_states:2,200,64;"
        "encoder_attention_mask:2,200' --input_format=ND --precision_mode_v2=mixed_float16 --log=error"
    )
    fp32 = A.AscendSettings(soc_version="Ascend310P3", precision="fp32", shapes=one, log="info")
    line = A.shell_command(A.atc_command("my model.onnx", fp32, shapes, output="out/pt dit"))
    assert line == (
        "atc --model='my model.onnx' --framework=5 --output='out/pt dit' --soc_version=Ascend310P3 "
        "--input_shape='hidden_states:2,4,1,16,16;timestep:2;encoder_hidden_states:2,200,64;"
        "encoder_attention_mask:2,200' --input_format=ND --precision_mode_v2=origin --log=info"
    )
    pure = A.AscendSettings(precision="fp16", precision_mode="fp16", shapes=one)
    assert "--precision_mode_v2=fp16 " in A.shell_command(A.atc_command("model.onnx", pure, shapes))
    two = (G.AtcShape(2, 1, 16, 16, 200), G.AtcShape(2, 1, 32, 32, 200))
    dyn = A.AscendSettings(precision="bf16", shapes=two)
    line = A.shell_command(A.atc_command("model.onnx", dyn, G.atc_inputs(contract_inputs(), two)))
    assert line == (
        "atc --model=model.onnx --framework=5 --output=model_partial --soc_version=Ascend910B "
        "--input_shape='hidden_states:2,4,1,-1,-1;timestep:2;encoder_hidden_states:2,200,64;"
        "encoder_attention_mask:2,200' --input_format=ND --precision_mode_v2=mixed_bfloat16 "
        "--dynamic_dims='16,16;32,32' --log=error"
    )


def test_shape_mapping_refuses_shapes_the_graph_cannot_take():
    two = (G.AtcShape(2, 1, 16, 16, 8), G.AtcShape(2, 1, 24, 8, 8))
    with pytest.raises(G.AtcUnsupported, match=r"hidden_states axis 3 \(latent_height\) is fixed to 16"):
        G.atc_inputs(contract_inputs(h=16, w=16), two)
    odd = (G.AtcShape(2, 1, 16, 16, 8), G.AtcShape(2, 1, 12, 16, 8))
    with pytest.raises(G.AtcUnsupported, match="every size must be a multiple of 8"):
        G.atc_inputs(contract_inputs(), odd)
    with pytest.raises(G.AtcUnsupported, match="are the same graph dimension 'hw'"):
        G.atc_inputs(contract_inputs(h="hw", w="hw"), two)
    with pytest.raises(G.AtcUnsupported, match="not a transformer input"):
        G.atc_inputs([("data", [1, "T"])], two)
    square = (G.AtcShape(2, 1, 16, 16, 8), G.AtcShape(2, 1, 24, 24, 8))
    assert G.atc_inputs(contract_inputs(h="hw", w="hw"), square).dynamic_dims == "16,16;24,24"


def test_user_shapes_and_settings_are_checked():
    assert A.parse_shapes("512x512; 2@1024x768 ,64x64x16") == [
        (None, 512, 512, None),
        (2, 1024, 768, None),
        (None, 64, 64, 16),
    ]
    with pytest.raises(ValueError, match=r"\[PROMPTS@\]HEIGHTxWIDTH"):
        A.parse_shapes("512*512")
    assert A.graph_shape(TINY, 2, 128, 64, 1, 8, True, 8) == G.AtcShape(4, 1, 16, 8, 8)
    with pytest.raises(ValueError, match="use 64 or 128"):
        A.graph_shape(TINY, 1, 100, 64, 1, 8, True, 8)
    with pytest.raises(ValueError, match="npu-smi"):
        A.AscendSettings(soc_version="910B", shapes=(G.AtcShape(2, 1, 8, 8, 8),))
    many = tuple(G.AtcShape(2, 1, 8 * (i + 1), 8, 8) for i in range(101))
    with pytest.raises(ValueError, match="2..100"):
        A.AscendSettings(shapes=many)


# ------------------------------------------------------------------------------- op check


def synthetic(nodes, opset=18, extra_imports=(), functions=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "w"])
    inits = [
        helper.make_tensor("crop", TensorProto.INT64, [3], [1, 4, 8]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    imports = [helper.make_opsetid("", opset), *extra_imports]
    model = helper.make_model(graph, opset_imports=imports, functions=list(functions))
    model.ir_version = 10
    return model


def test_op_check_names_unsupported_ops_and_their_nodes():
    nodes = [
        helper.make_node("Add", ["x", "x"], ["a"], name="add0"),
        helper.make_node("CenterCropPad", ["a", "crop"], ["g1"], name="crop_a"),
        helper.make_node("CenterCropPad", ["g1", "crop"], ["g2"], name="crop_b"),
        helper.make_node("ReduceL2", ["g2", "axes"], ["y"], name="norm_l2"),
    ]
    model = synthetic(nodes)
    onnx.checker.check_model(model, full_check=True)  # a valid opset-18 graph, only not for ATC
    with pytest.raises(G.AtcUnsupported) as err:
        G.check_atc_graph(model)
    text = str(err.value)
    assert "CenterCropPad (nodes: crop_a, crop_b)" in text and "ReduceL2 (nodes: norm_l2)" in text
    assert "at opset 18" in text and "Add" not in text
    # ReduceL2 is registered up to opset 17 only: the same op passes there
    ok = synthetic([nodes[0], helper.make_node("ReduceL2", ["a", "axes"], ["y"], name="norm_l2")], opset=17)
    assert G.check_atc_graph(ok) == {"Add": 1, "ReduceL2": 1}


def test_custom_domains_functions_and_new_opsets_point_to_the_portable_graph():
    body = helper.make_function(
        "ptdit", "PTDiTProxyPool", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_opsetid("", 18)],
    )  # fmt: skip
    node = helper.make_node("PTDiTProxyPool", ["x"], ["y"], domain="ptdit", name="pool_0")
    model = synthetic([node], extra_imports=[helper.make_opsetid("ptdit", 1)], functions=[body])
    with pytest.raises(G.AtcUnsupported) as err:
        G.check_atc_graph(model)
    text = str(err.value)
    assert "local functions (ptdit::PTDiTProxyPool)" in text
    assert "ptdit::PTDiTProxyPool (nodes: pool_0)" in text and text.count("--graph portable") == 2
    assert "imports 2 opsets" in text
    with pytest.raises(G.AtcUnsupported, match="opset 19: ATC parses ONNX opsets up to 18"):
        G.check_atc_graph(synthetic([helper.make_node("Relu", ["x"], ["y"])], opset=19))


def test_unused_opset_imports_are_dropped():
    model = synthetic(
        [helper.make_node("Relu", ["x"], ["y"])], extra_imports=[helper.make_opsetid("extra", 1)]
    )
    with pytest.raises(G.AtcUnsupported, match="imports 2 opsets"):
        G.check_atc_graph(model)
    assert G.prune_opset_imports(model) == ["extra:1"]
    assert G.check_atc_graph(model) == {"Relu": 1}


def test_op_list_records_its_source():
    data = json.loads(G.ATC_OPS_FILE.read_text())
    assert data["cann_version"] and data["sources"] and data["documentation"]
    assert all(s["commit"] and s["repository"].startswith("https://") for s in data["sources"])
    ops = G.load_atc_ops()
    assert ops.opsets["LayerNormalization"] == {17, 18}  # the CANN documentation page says v17/v18
    assert all(op in data["ops"] and data["ops"][op]["from"] for op in ops.opsets)


# --------------------------------------------------------------------------------- runner

STATIC = (G.AtcShape(2, 1, 16, 8, 8),)


def contract_graph(folder, dynamic: bool = False):
    """A small graph with the transformer's inputs and output (model_output = hidden_states twice
    along channels), static or with the exporter's dim names, to drive ascend_from_onnx quickly."""
    folder.mkdir(parents=True, exist_ok=True)
    f, i = TensorProto.FLOAT, TensorProto.INT64
    b, h, w, n = ("batch", "8*h_windows", "8*w_windows", "text_len") if dynamic else (2, 16, 8, 8)
    inputs = [
        helper.make_tensor_value_info("hidden_states", f, [b, 4, 1, h, w]),
        helper.make_tensor_value_info("timestep", f, [b]),
        helper.make_tensor_value_info("encoder_hidden_states", f, [b, n, 64]),
        helper.make_tensor_value_info("encoder_attention_mask", i, [b, n]),
    ]
    out = helper.make_tensor_value_info("model_output", f, [b, 8, 1, h, w])
    node = helper.make_node(
        "Concat", ["hidden_states", "hidden_states"], ["model_output"], axis=1, name="cat"
    )
    model = helper.make_model(helper.make_graph([node], "contract", inputs, [out]))
    model.ir_version = 10
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 18))
    onnx.save(model, str(folder / "model.onnx"))
    return folder / "model.onnx"


@pytest.mark.slow  # uses the module's real exports
def test_a_build_without_atc_claims_no_om(static):
    out, report = static
    folder = out / "transformer"
    assert report["om_built"] is False and report["returncode"] is None
    assert "no .om was built" in report["message"] and f"sh {folder / A.SCRIPT}" in report["message"]
    assert not (folder / A.OM).exists() and not (folder / "manifest.json").exists()
    info = settings_json(out)
    assert info["om"] is None and info["run"] is None
    script = (folder / A.SCRIPT).read_text()
    assert os.access(folder / A.SCRIPT, os.X_OK) and info["atc"]["command"] in script.splitlines()


def test_without_atc_nothing_claims_an_om(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_without_atc())
    path = contract_graph(tmp_path / "t")
    result = A.ascend_from_onnx(path, A.AscendSettings(shapes=STATIC))
    assert not result.om_built and result.returncode is None and "no .om was built" in result.message
    assert not (tmp_path / "t" / A.OM).exists()
    assert json.loads((tmp_path / "t" / A.SETTINGS).read_text())["om"] is None
    with pytest.raises(A.AtcUnavailable, match="atc` is not on PATH"):
        A.ascend_from_onnx(path, A.AscendSettings(shapes=STATIC), run=True)


def test_runner_runs_a_stand_in_atc_and_reports_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_atc(tmp_path / "bin"))
    path = contract_graph(tmp_path / "my folder")  # a space in the path: the script must quote it
    result = A.ascend_from_onnx(path, A.AscendSettings(precision="fp32", shapes=STATIC))
    folder = path.parent
    info = json.loads((folder / A.SETTINGS).read_text())
    assert result.om_built and result.returncode == 0 and result.om == folder / A.OM
    assert (folder / A.OM).read_text() == "not a real offline model\n"
    assert not (folder / f"{A.PARTIAL}.om").exists()
    # what atc received is the argv ascend.json records: the script's quoting round-trips
    assert (folder / "atc_args.txt").read_text().splitlines() == info["atc"]["argv"][1:]
    assert "--precision_mode_v2=origin" in info["atc"]["argv"]
    assert info["om"] == A.OM and info["run"]["returncode"] == 0 and "stand-in" in info["run"]["output_tail"]


def test_a_failing_atc_fails_the_build_with_its_output(tmp_path, monkeypatch):
    failing = '#!/bin/sh\necho "E19999: Inner Error (stand-in)"\nexit 3\n'
    monkeypatch.setenv("PATH", fake_atc(tmp_path / "bin", failing))
    path = contract_graph(tmp_path / "t")
    with pytest.raises(A.AtcFailed, match=r"exited with 3; no .om was built(.|\n)*E19999"):
        A.ascend_from_onnx(path, A.AscendSettings(shapes=STATIC))
    assert not (path.parent / A.OM).exists()
    assert json.loads((path.parent / A.SETTINGS).read_text())["run"]["returncode"] == 3


def test_static_conversion_refuses_a_dynamic_graph(tmp_path):
    path = contract_graph(tmp_path / "t")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, str(path))
    with pytest.raises(
        G.AtcUnsupported, match=r"needs every graph input and output fixed.*hidden_states \['batch'"
    ):
        A.ascend_from_onnx(path, A.AscendSettings(shapes=STATIC), run=False)


@pytest.mark.slow  # uses the module's real exports
def test_a_build_with_atc_writes_the_manifest_and_is_cached(dynamic):
    out, report, again = dynamic
    folder = out / "transformer"
    assert report["om_built"] is True and report["returncode"] == 0
    assert (folder / "atc_args.txt").read_text().splitlines() == settings_json(out)["atc"]["argv"][1:]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backend"] == "ascend" and A.OM in manifest["files"]
    assert again.get("cache_hit") is True and again["key"] == manifest["key"]


# -------------------------------------------------------------------------------- runtime


def test_om_engine_says_what_it_needs(tmp_path, monkeypatch):
    from ptdit_runtime.engines import om

    monkeypatch.setenv("PATH", path_without_atc())
    A.ascend_from_onnx(contract_graph(tmp_path / "a"), A.AscendSettings(shapes=STATIC))
    with pytest.raises(FileNotFoundError, match="ATC has not run for this folder.*atc.sh"):
        om.OmEngine(tmp_path / "a")
    try:
        om.available_session()
    except RuntimeError:
        monkeypatch.setenv("PATH", fake_atc(tmp_path / "bin"))
        A.ascend_from_onnx(contract_graph(tmp_path / "b"), A.AscendSettings(shapes=STATIC))
        with pytest.raises(RuntimeError, match="ais_bench.*pyACL module `acl`"):
            om.OmEngine(tmp_path / "b")


def test_om_engine_profile_helpers_follow_acl_and_ascend_json(tmp_path):
    from ptdit_runtime.engines import om

    # aclmdlGetInputDynamicDims' documented profile 0: data(1,1,40,20) + label(1,20) + mask(1,1)
    shapes = {"data": (1, 1, 40, 20), "label": (1, 20), "mask": (1, 1)}
    assert om.dynamic_dims(["data", "label", "mask"], shapes) == [1, 1, 40, 20, 1, 20, 1, 1]
    compiled = [G.AtcShape(b, f, h, w, n) for b, f, h, w, n in GRAPH_SHAPES]
    path = contract_graph(tmp_path / "t", dynamic=True)
    A.ascend_from_onnx(path, A.AscendSettings(shapes=tuple(compiled)), run=False)
    info = json.loads((path.parent / A.SETTINGS).read_text())
    assert info["atc"]["dynamic_dims"] == "2,8,8,2,2,2;2,16,8,2,2,2;4,8,16,4,4,4"
    b, f, h, w, n = GRAPH_SHAPES[2]
    feeds = {
        "hidden_states": (b, 4, f, h, w),
        "timestep": (b,),
        "encoder_hidden_states": (b, n, 64),
        "encoder_attention_mask": (b, n),
    }
    assert om.match_profile(feeds, info["profiles"]) == 2
    assert om.match_profile(feeds | {"timestep": (b + 1,)}, info["profiles"]) == -1
    assert om.dynamic_dims(list(feeds), feeds) == [4, 4, 1, 8, 16, 4, 4, 8, 64, 4, 8]
    spec = tuple(None if d < 0 else d for d in info["outputs"][0]["shape"])
    assert om.output_shape(spec, feeds["hidden_states"]) == (4, 8, 1, 8, 16)
