"""The TensorRT engine folder's plugin library: what the build writes, what the runtime trusts.

No TensorRT here: the trust check needs none, and the build step runs with a stand-in for the
`tensorrt` module (unittest.mock) so that the files it writes, and the manifest record it
returns, come from the real builder code. docs/plugins.md's commands are checked against
those files.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from unittest import mock

import onnx
import pytest
from onnx import TensorProto, helper

from ptdit_export import kernels
from ptdit_export.builder import tensorrt as trt_builder
from ptdit_export.ops import SPEC_PATH
from ptdit_runtime.engines import trt as trt_engine

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "plugins.md"


def _engine_folder(tmp_path: Path, library: bytes, record: dict | None = None) -> Path:
    folder = tmp_path / "transformer"
    folder.mkdir()
    (folder / "engine.plan").write_bytes(b"plan")
    (folder / trt_builder.PLUGIN_LIBRARY).write_bytes(library)
    if record is None:
        record = {"path": trt_builder.PLUGIN_LIBRARY, "sha256": hashlib.sha256(library).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps({"backend": "tensorrt", "plugin_library": record}))
    return folder


def _random_bytes(seed: int) -> bytes:
    return random.Random(seed).randbytes(random.Random(seed).randint(64, 4096))


@pytest.mark.parametrize("seed", range(3))
def test_a_library_matching_the_manifest_hash_is_used(tmp_path, seed):
    folder = _engine_folder(tmp_path, _random_bytes(seed))
    assert trt_engine.folder_plugin_library(folder) == folder / trt_builder.PLUGIN_LIBRARY


@pytest.mark.parametrize("seed", range(3))
def test_a_changed_library_is_refused_naming_the_file_and_the_fix(tmp_path, seed):
    data = _random_bytes(seed)
    folder = _engine_folder(tmp_path, data)
    flipped = bytearray(data)
    flipped[random.Random(seed).randrange(len(data))] ^= 0x01  # one bit anywhere
    (folder / trt_builder.PLUGIN_LIBRARY).write_bytes(bytes(flipped))
    with pytest.raises(ValueError) as err:
        trt_engine.folder_plugin_library(folder)
    message = str(err.value)
    assert str(folder / trt_builder.PLUGIN_LIBRARY) in message
    assert "ptdit-export build" in message and "trust_plugins=True" in message
    # the caller may vouch for the folder
    assert trt_engine.folder_plugin_library(folder, trust_plugins=True) == folder / trt_builder.PLUGIN_LIBRARY


def test_the_engine_refuses_a_changed_library_before_touching_tensorrt(tmp_path, monkeypatch):
    folder = _engine_folder(tmp_path, b"built", {"path": trt_builder.PLUGIN_LIBRARY, "sha256": "0" * 64})

    def no_tensorrt():
        raise AssertionError("the trust check must come before TensorRT is imported")

    monkeypatch.setattr(trt_engine, "import_tensorrt", no_tensorrt)
    monkeypatch.delenv(trt_engine.PLUGIN_ENV, raising=False)
    with pytest.raises(trt_engine.PluginTrustError, match="does not match the sha256"):
        trt_engine.TensorRTEngine(folder / "engine.plan")
    from ptdit_runtime.engines import load_engine

    with pytest.raises(trt_engine.PluginTrustError, match="trust_plugins=True"):
        load_engine(folder, backend="tensorrt")
    # trusted, it goes on to TensorRT
    with pytest.raises(AssertionError, match="before TensorRT"):
        load_engine(folder, backend="tensorrt", trust_plugins=True)


@pytest.mark.parametrize("path", ["../libptdit_plugins.so", "/usr/lib/libptdit_plugins.so"])
def test_a_library_outside_the_folder_is_refused(tmp_path, path):
    folder = _engine_folder(tmp_path, b"x", {"path": path, "sha256": hashlib.sha256(b"x").hexdigest()})
    with pytest.raises(ValueError, match="outside its folder"):
        trt_engine.folder_plugin_library(folder)


def test_a_missing_library_or_record_is_reported(tmp_path):
    folder = _engine_folder(tmp_path, b"x")
    (folder / trt_builder.PLUGIN_LIBRARY).unlink()
    with pytest.raises(FileNotFoundError, match="is missing; rebuild"):
        trt_engine.folder_plugin_library(folder)
    (folder / "manifest.json").write_text(json.dumps({"plugin_library": {"path": 3}}))
    with pytest.raises(ValueError, match='"plugin_library" must be'):
        trt_engine.folder_plugin_library(folder)
    (folder / "manifest.json").write_text(json.dumps({"backend": "tensorrt"}))
    assert trt_engine.folder_plugin_library(folder) is None
    (folder / "manifest.json").unlink()
    assert trt_engine.folder_plugin_library(folder) is None


def test_runtime_creator_names_are_those_of_ops_json():
    spec = json.loads(SPEC_PATH.read_text())
    assert spec["plugin_namespace"] == ""
    assert trt_engine.PLUGIN_CREATORS == tuple((op["name"], op["version"]) for op in spec["ops"])


class _Registry:
    def __init__(self, registered: set[str], handle):
        self.registered, self.handle, self.loads = registered, handle, []

    def get_creator(self, name, version, namespace=""):
        return object() if name in self.registered else None

    def load_library(self, path):
        self.loads.append(path)
        return self.handle


@pytest.mark.parametrize(
    "registered,handle,loads",
    [
        ({"PTDiTProxyPool", "PTDiTWindowAttention", "PTDiTShiftedWindowAttention"}, 1, 0),  # e.g. after ctypes.CDLL
        ({"PTDiTProxyPool"}, 1, 1),
        (set(), 1, 1),
    ],
)
def test_plugins_are_registered_once(registered, handle, loads):
    registry = _Registry(registered, handle)
    trt = mock.Mock(get_plugin_registry=lambda: registry)
    trt_engine.register_plugins(trt, None, Path("lib.so"))
    assert len(registry.loads) == loads


def test_a_library_tensorrt_cannot_load_is_an_error():
    registry = _Registry(set(), None)
    trt = mock.Mock(get_plugin_registry=lambda: registry)
    with pytest.raises(RuntimeError, match="could not load the plugin library lib.so"):
        trt_engine.register_plugins(trt, None, Path("lib.so"))


# ------------------------------------------------------------------ what the build writes
def _fake_tensorrt() -> mock.MagicMock:
    """Stands in for the `tensorrt` module (version, plugin registry)."""
    trt = mock.MagicMock(__version__="11.1.0")
    trt.get_plugin_registry.return_value = _Registry(set(), handle=1)
    return trt


@pytest.fixture
def built_folder(tmp_path, monkeypatch) -> tuple[Path, dict, mock.MagicMock, bytes]:
    """OUT/transformer after the TensorRT build step of `ptdit-export build`."""
    from ptdit_export.builder import pipeline
    from ptdit_export.builder.profiles import ShapeRange
    from ptdit_export.model import load_config

    out = tmp_path / "out"
    folder = out / "transformer"
    folder.mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["hidden_states"], ["out"])],
        "g",
        [helper.make_tensor_value_info("hidden_states", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 4])],
    )
    onnx.save(helper.make_model(graph), str(folder / "model.onnx"))
    library = tmp_path / "build" / "libptdit_plugins.so"
    library.parent.mkdir()
    data = _random_bytes(7)
    library.write_bytes(data)

    trt = _fake_tensorrt()
    monkeypatch.setattr(trt_builder, "import_tensorrt", lambda: trt)
    calls = []

    def build(trt, onnx_path, shapes, timing_cache, level):  # Polygraphy + TensorRT are not here
        calls.append((Path(onnx_path), shapes))
        assert not onnx.load(str(onnx_path)).functions  # the parser would inline function bodies
        return b"serialized plan"

    monkeypatch.setattr(trt_builder, "serialized_engine", build)
    config = load_config("tiny")
    profiles = ShapeRange().graph_profiles(config, 8)
    settings = pipeline.BuildSettings(backend="onnxruntime", plugin_library=str(library))
    facts = pipeline._build_tensorrt(folder / "model.onnx", folder, config, profiles, settings, out)
    assert [c[0].name for c in calls] == ["model.trt.onnx"]
    return folder, facts, trt, data


def test_the_build_copies_the_library_and_records_its_hash(built_folder):
    folder, facts, trt, data = built_folder
    record = facts["plugin_library"]
    assert record == {"path": kernels.PLUGIN_LIBRARY_NAME, "sha256": hashlib.sha256(data).hexdigest()}
    assert (folder / record["path"]).read_bytes() == data
    assert (folder / "engine.plan").read_bytes() == b"serialized plan"
    # what the runtime then accepts, given the manifest the pipeline writes from these facts
    (folder / "manifest.json").write_text(json.dumps({"backend": "tensorrt", **facts}))
    assert trt_engine.folder_plugin_library(folder) == folder / record["path"]


def test_the_build_registers_the_plugins_from_the_given_library(built_folder):
    _, _, trt, _ = built_folder
    assert [Path(p).name for p in trt.get_plugin_registry().loads] == ["libptdit_plugins.so"]


def test_the_build_names_what_to_install_without_polygraphy(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_polygraphy(name, *args, **kwargs):
        if name.startswith("polygraphy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_polygraphy)
    with pytest.raises(trt_builder.TensorRTUnavailable, match=r"pip install 'ptdit-export\[tensorrt\]'"):
        trt_builder.serialized_engine(_fake_tensorrt(), Path("m.onnx"), {}, None, 3)


def _doc_commands() -> list[str]:
    """The lines of docs/plugins.md's code blocks, continuation lines joined."""
    blocks = re.findall(r"```(?:bash|python)\n(.*?)```", DOCS.read_text(), re.S)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_doc_commands_name_files_the_build_writes(built_folder):
    folder, _, _, _ = built_folder
    written = {p.name for p in folder.iterdir()}
    cmake_outputs = {kernels.LIBRARY_NAME, kernels.PLUGIN_LIBRARY_NAME}
    lines = _doc_commands()
    named = [m for line in lines for m in re.findall(r"\btransformer/([\w.]+)", line)]
    assert named, "docs/plugins.md shows no command on the engine folder"
    assert set(named) <= written, f"docs name {set(named) - written}; the build writes {sorted(written)}"
    built = {m for line in lines for m in re.findall(r"\bbuild/lib/([\w.]+)", line)}
    assert built and built <= cmake_outputs
    for line in lines:
        # the ONNX parser inlines local-function bodies before it looks for plugins
        plugins = any(flag in line for flag in ("--plugins", "--dynamicPlugins", "--staticPlugins"))
        if plugins and "transformer/model.onnx" in line:
            assert "--enablePluginOverride" in line, line
        assert "set_plugins_to_serialize" not in line  # the binding is the plugins_to_serialize property
