"""The root manifest is the truth: every file with size and sha256, a key over the real inputs,
a cache hit only when both match (the backend actually built, not the option), a hand-edited
manifest never trusted, a corruption matrix that never says "up to date", `verify --files`."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from ptdit_export.builder import manifest as mf
from ptdit_export.builder import staging
from ptdit_export.builder.pipeline import build, resolve_backend
from ptdit_export.cli import main
from ptdit_runtime import manifest as rm
from tests.builder.conftest import CLI_ARGS, COMPONENTS, SEED, SETTINGS


def test_the_manifest_lists_every_file_with_its_size_and_hash(engine):
    manifest = json.loads((engine / "manifest.json").read_text())
    assert manifest["format"] == rm.FORMAT and manifest["backend"] == "onnxruntime"
    assert set(manifest["files"]) == set(rm.folder_files(engine))
    assert {"transformer/model.optimized.onnx", "scheduler/scheduler_config.json", "model_index.json"} <= set(
        manifest["files"]
    )
    for rel, record in manifest["files"].items():
        assert record == {"size": (engine / rel).stat().st_size, "sha256": rm.sha256_file(engine / rel)}
    assert manifest["seal"] == mf.seal_of(manifest)


def test_build_then_onnxruntime_then_build_all_hit_the_cache(engine):
    if resolve_backend("auto") != "onnxruntime":
        pytest.skip("auto builds for TensorRT on this machine")
    before = (engine / "manifest.json").read_bytes()
    for backend in ("auto", "onnxruntime", "auto"):
        result = CliRunner().invoke(main, ["build", *CLI_ARGS, "--backend", backend, "--out", str(engine)])
        assert result.exit_code == 0 and "up to date for onnxruntime (fp32)" in result.output, result.output
    assert (engine / "manifest.json").read_bytes() == before


def _stops_before_export(folder, monkeypatch, caplog) -> str:
    """Run the build up to its export (the injected failure there proves it was no cache hit);
    returns the reason it logged."""
    monkeypatch.setenv(staging.FAIL_ENV, "export")
    caplog.clear()
    with caplog.at_level("INFO", logger="ptdit_export"):
        with pytest.raises(staging.InjectedFailure):
            build("tiny", folder, SETTINGS, seed=SEED, components=COMPONENTS)
    return " ".join(r.getMessage() for r in caplog.records if "building" in r.getMessage())


CORRUPTIONS = {
    "delete": lambda p: p.unlink(),
    "truncate": lambda p: os.truncate(p, p.stat().st_size // 2),
    "alter": lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]),  # same size
}


def test_every_deleted_truncated_or_altered_file_forces_a_rebuild(folder, monkeypatch, caplog):
    files = rm.folder_files(folder) + ["manifest.json"]
    original = {rel: (folder / rel).read_bytes() for rel in files}
    mtimes = {rel: (folder / rel).stat().st_mtime_ns for rel in files}
    for rel in files:
        for kind, corrupt in CORRUPTIONS.items():
            corrupt(folder / rel)
            if (folder / rel).exists():  # the same mtime too: only the content tells
                os.utime(folder / rel, ns=(mtimes[rel], mtimes[rel]))
            why = _stops_before_export(folder, monkeypatch, caplog)
            assert why, f"{kind} {rel}: the build did not say why it rebuilds"
            (folder / rel).write_bytes(original[rel])
    monkeypatch.delenv(staging.FAIL_ENV)
    assert build("tiny", folder, SETTINGS, seed=SEED, components=COMPONENTS).get("cache_hit")


def test_an_extra_file_forces_a_rebuild(folder, monkeypatch, caplog):
    (folder / "transformer" / "stray.bin").write_bytes(b"x")
    assert "not in the manifest" in _stops_before_export(folder, monkeypatch, caplog)


def test_a_hand_edited_manifest_is_not_trusted(folder, monkeypatch, caplog):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["backend"] = "tensorrt"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert "edited by hand" in _stops_before_export(folder, monkeypatch, caplog)


def test_changed_inputs_are_named(folder, monkeypatch, caplog):
    monkeypatch.setenv(staging.FAIL_ENV, "export")
    with caplog.at_level("INFO", logger="ptdit_export"), pytest.raises(staging.InjectedFailure):
        build("tiny", folder, SETTINGS, seed=SEED + 1, components=COMPONENTS)
    assert "the inputs changed: source" in caplog.text


def test_weights_are_keyed_by_content_not_names_sizes_or_mtimes(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"num_layers": 2}')
    weights = ckpt / "model.safetensors"
    weights.write_bytes(os.urandom(4096))
    stat = weights.stat()
    source = {"checkpoint": str(ckpt)}
    before = mf.source_fingerprint(source)
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # same size ...
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... same mtime
    assert mf.source_fingerprint(source) != before
    # a weights file is keyed with the config.json beside it
    single = {"checkpoint": str(weights)}
    first = mf.source_fingerprint(single)
    (ckpt / "config.json").write_text('{"num_layers": 3}')
    assert mf.source_fingerprint(single) != first


def test_verify_files_checks_every_hash(folder):
    ok = CliRunner().invoke(main, ["verify", str(folder), "--files"])
    assert ok.exit_code == 0 and "match manifest.json" in ok.output
    path = folder / "scheduler" / "scheduler_config.json"
    path.write_text(path.read_text().replace("rflow", "rflox"))  # same size
    bad = CliRunner().invoke(main, ["verify", str(folder), "--files"])
    assert (
        bad.exit_code == 1
        and bad.output.startswith("Error: ")
        and "scheduler/scheduler_config.json" in bad.output
    )
    assert "Traceback" not in bad.output
