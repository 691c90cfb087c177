"""libptdit_plugins.so seen through TensorRT's plugin interfaces, without TensorRT.

tests/plugins/plugin_harness.cpp loads the library as TensorRT's loadLibrary does (dlopen,
setLoggerFinder, getCreators) and drives each IPluginV3 the way the builder and runtime do;
here its report is checked against ops.json and the ops' contracts. It also stands in for a
loaded libnvinfer's registry, for the registration a plain dlopen makes.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from ptdit_export.ops import SPEC_PATH
from tests.plugins.conftest import tensorrt_include_dir

pytestmark = pytest.mark.slow  # builds the kernels and the plugins (about 1.5 minutes)

FIELD_TYPE = {"int": 5, "ints": 5, "float": 1}  # nvinfer1::PluginFieldType kINT32, kFLOAT32
FLOATS = ["float32", "float16", "bfloat16"]


@pytest.fixture(scope="module")
def report(plugins_build):
    harness = plugins_build.dir / "bin" / "ptdit_plugin_harness"
    cmd = [str(harness), str(plugins_build.plugins)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def spec():
    return {op["name"]: op for op in json.loads(SPEC_PATH.read_text())["ops"]}


def test_creators_declare_the_ops_of_ops_json(report, spec):
    assert [c["name"] for c in report["creators"]] == list(spec)
    namespace = json.loads(SPEC_PATH.read_text())["plugin_namespace"]
    for creator in report["creators"]:
        op = spec[creator["name"]]
        assert creator["interface"] == "PLUGIN CREATOR_V3ONE"
        assert creator["version"] == op["version"]
        assert creator["namespace"] == namespace
        assert [(f["name"], f["type"], f["length"]) for f in creator["fields"]] == [
            (a["name"], FIELD_TYPE[a["type"]], a.get("count", 1)) for a in op["attributes"]
        ]


@pytest.mark.parametrize("name", ["PTDiTProxyPool", "PTDiTWindowAttention", "PTDiTShiftedWindowAttention"])
def test_plugin_serialises_and_clones_its_fields(report, spec, name):
    case = report["cases"][name]
    assert case["created"]
    assert case["interfaces"] == ["PLUGIN_V3ONE_CORE", "PLUGIN_V3ONE_BUILD", "PLUGIN_V3ONE_RUNTIME"]
    assert (case["name"], case["version"]) == (name, spec[name]["version"])
    assert [f["name"] for f in case["serialized"]] == [a["name"] for a in spec[name]["attributes"]]
    assert case["roundtrip_equal"] and case["clone_equal"] and case["attach_equal"]
    values = {f["name"]: f["values"] for f in case["serialized"]}  # what the harness created it with
    expected = {"window": [1, 8, 8], "groups": [1, 2, 2], "num_heads": [16], "scale": [0.125]}
    assert values == {k: expected[k] for k in values}


@pytest.mark.parametrize("name", ["PTDiTProxyPool", "PTDiTWindowAttention", "PTDiTShiftedWindowAttention"])
def test_formats_follow_ops_json_dtypes(report, spec, name):
    case = report["cases"][name]
    inputs = spec[name]["inputs"]
    for first in ("float16", "float32"):
        supported = case[f"supported_after_{first}"]
        assert supported[0] == [t for t in FLOATS if t in inputs[0]["dtypes"]]
        for pos, inp in enumerate(inputs[1:], start=1):  # same dtype as q, or the int32 grid
            assert supported[pos] == (["int32"] if inp["dtypes"] == ["int32"] else [first])
        assert supported[len(inputs)] == [first]  # output
    assert case["accepts_chw32"] is False
    assert case["output_type"] == "float16" and case["nb_outputs"] == 1


def test_output_shapes(report):
    # proxy pool: [R, gh*gw, C] with R and C passed through; attention: q's shape
    assert report["cases"]["PTDiTProxyPool"]["output_shape"] == ["q0", 4, "q0"]
    for name in ("PTDiTWindowAttention", "PTDiTShiftedWindowAttention"):
        assert report["cases"][name]["output_shape"] == ["q0", "q0", "q0"]


@pytest.mark.parametrize(
    "name,messages",
    [
        ("PTDiTProxyPool", ["63 tokens per window but window (1, 8, 8) holds 64"]),
        ("PTDiTWindowAttention", ["head dim must be a multiple of 8", "2048 tokens per window"]),
        ("PTDiTShiftedWindowAttention", ["head dim must be a multiple of 8", "128 tokens per window but"]),
    ],
)
def test_unsupported_sizes_fail_at_build_and_at_enqueue_with_a_message(report, name, messages):
    case = report["cases"][name]
    assert case["configure_valid_rc"] == 0 and case["configure_symbolic_rc"] == 0
    assert len(case["rejected"]) == len(messages)
    for rejected, message in zip(case["rejected"], messages):
        assert rejected["configure_rc"] != 0 and message in rejected["configure_message"]
        assert rejected["enqueue_rc"] != 0 and rejected["enqueue_message"]


def test_invalid_fields_are_refused_with_a_message(report):
    bad = report["bad_fields"]
    assert not any(b["created"] for b in bad.values())
    assert "groups must be (1, gh, gw)" in bad["groups_not_dividing"]["message"]
    assert "'groups' is missing" in bad["missing_groups"]["message"]
    assert "'window' is float32, expected int32" in bad["window_as_float"]["message"]
    assert "'window' has 2 elements, expected 3" in bad["window_too_short"]["message"]


@pytest.mark.parametrize("name", ["PTDiTProxyPool", "PTDiTWindowAttention", "PTDiTShiftedWindowAttention"])
def test_a_profile_whose_maximum_overflows_fails_the_build(report, name):
    # 600M windows of 64 tokens (or of 4 proxies) pass every per-dimension check but overflow
    # the kernels' 32-bit row space: configurePlugin must refuse the profile, not enqueue later
    case = report["cases"][name]
    assert case["profile_max_600000000"]["rc"] != 0
    message = case["profile_max_600000000"]["message"]
    assert "profile maximum" in message and "2^31" in message and "600000000" in message
    assert case["profile_max_1024"] == {"rc": 0, "message": ""}


@pytest.mark.parametrize("name", ["PTDiTProxyPool", "PTDiTWindowAttention", "PTDiTShiftedWindowAttention"])
def test_an_empty_batch_enqueues_nothing(report, name):
    # 0 windows with null tensors (TensorRT may hand those out for empty tensors): success, no log
    case = report["cases"][name]
    assert case["empty_enqueue_rc"] == 0 and case["empty_enqueue_messages"] == 0


# ------------------------------------------------------------------ registration on a plain dlopen
NAMES = ["PTDiTProxyPool", "PTDiTWindowAttention", "PTDiTShiftedWindowAttention"]


def _registry_run(plugins_build, tmp_path, *extra: str) -> dict:
    copy = tmp_path / "copy" / plugins_build.plugins.name  # another path: a second instance
    copy.parent.mkdir()
    copy.write_bytes(plugins_build.plugins.read_bytes())
    harness = plugins_build.dir / "bin" / "ptdit_plugin_harness"
    cmd = [str(harness), "--registry", str(plugins_build.plugins), str(copy), *extra]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout)


def test_a_plain_dlopen_registers_with_the_loaded_tensorrt_once(plugins_build, tmp_path):
    seen = _registry_run(plugins_build, tmp_path)
    assert seen["after_dlopen"] == NAMES  # ctypes.CDLL / polygraphy --plugins / trtexec --staticPlugins
    # a second copy of the library finds its creators registered and registers nothing
    assert seen["copy_loaded"] and seen["after_copy"] == NAMES
    assert seen["calls_after_copy"] == seen["calls_after_dlopen"] == 3
    # a later loadLibrary (trt load_library, trtexec --dynamicPlugins) succeeds, without duplicates
    assert seen["load_library_ok"] and seen["after_load_library"] == NAMES and seen["duplicates"] == 0


def test_no_registration_on_load_into_another_tensorrt_major(plugins_build, tmp_path):
    # IPluginRegistry's layout is not stable across majors: built against 11, loaded into 10.x
    include = tensorrt_include_dir()
    text = (include / "NvInferVersion.h").read_text()
    major = int(re.search(r"#define TRT_MAJOR_ENTERPRISE (\d+)", text).group(1))
    seen = _registry_run(plugins_build, tmp_path, str((major - 1) * 10000 + 1301))
    assert seen["after_dlopen"] == [] and seen["calls_after_dlopen"] == 0
    assert seen["load_library_ok"] and seen["after_load_library"] == NAMES
