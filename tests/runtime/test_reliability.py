"""The runtime never runs a folder that does not match its manifest, and never mixes two folders.

- Corruption matrix over every file of a tiny built folder: deleted or truncated -> `generate`
  fails with one `Error:` line naming the file (the fast size check at load); altered with the
  same size -> the full check (`verify="full"`, `generate --verify-files`) names the file, and
  a plain `generate` either fails clearly or runs (the fast check reads no file; see
  docs/reliability.md).
- Manifests that are missing, garbage or point outside the folder are refused.
- A build swapping a new folder in (one rename) while a reader loads: the reader loads again
  and ends with one whole folder; a pipeline loaded before keeps generating the same pixels.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from ptdit_runtime import Pipeline
from ptdit_runtime.manifest import FolderError, MissingManifest, check_folder
from tests.runtime import builders
from tests.runtime.builders import assert_one_error, run_cli

FILES = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.onnx",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    "transformer/config.json",
    "transformer/export.json",
    "transformer/model.onnx",
    "vae_decoder/config.json",
    "vae_decoder/model.onnx",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return builders.engine_folder(tmp_path_factory.mktemp("reliability") / "engine", weights=False)


def test_the_matrix_covers_every_file(folder):
    assert sorted(json.loads((folder / "manifest.json").read_text())["files"]) == FILES


def generate(folder, tmp_path, *extra):
    return run_cli("generate", "a red circle", "--engine-dir", str(folder), "--steps", "1", "--seed", "3",
                   "-o", str(tmp_path / "x.png"), *extra)  # fmt: skip


@pytest.mark.parametrize("how", ["delete", "truncate", "grow"])
@pytest.mark.parametrize("rel", FILES)
def test_deleted_or_resized_file_is_refused_naming_it(folder, tmp_path, rel, how):
    copy = builders.copy_folder(folder, tmp_path / "engine")
    path = copy / rel
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    else:
        cut = int(np.random.default_rng().integers(0, len(data)))
        path.write_bytes(data[:cut] if how == "truncate" else data + data[: cut + 1])
    assert_one_error(generate(copy, tmp_path), 1, rel, "manifest", "--force")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(FolderError, match=rel):
        Pipeline.from_dir(copy, provider="cpu")


@pytest.mark.parametrize("rel", FILES)
def test_altered_file_of_the_same_size(folder, tmp_path, rel):
    copy = builders.copy_folder(folder, tmp_path / "engine")
    path = copy / rel
    data = np.frombuffer(path.read_bytes(), np.uint8).copy()
    g = np.random.default_rng()
    at = g.integers(0, len(data), max(1, len(data) // 100))  # 1% of the bytes, each flipped
    data[at] ^= g.integers(1, 256, len(at), dtype=np.uint8)
    path.write_bytes(data.tobytes())
    check_folder(copy)  # the fast check reads no file: same sizes pass
    with pytest.raises(FolderError, match=f"{rel}: content differs"):
        check_folder(copy, full=True)
    assert_one_error(generate(copy, tmp_path, "--verify-files"), 1, rel, "content differs")
    # without --verify-files: a clear error or a picture, never a traceback
    result = generate(copy, tmp_path)
    if result.exit_code != 0:
        assert_one_error(result, 1)


def test_manifest_missing_garbage_or_outside(folder, tmp_path):
    copy = builders.copy_folder(folder, tmp_path / "engine")
    manifest = copy / "manifest.json"
    good = manifest.read_text()
    manifest.unlink()
    assert_one_error(generate(copy, tmp_path), 1, "no manifest.json", "ptdit-export build")
    with pytest.raises(MissingManifest):
        Pipeline.from_dir(copy)
    for text, needle in (
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a format-2 manifest"),
        (json.dumps({"files": {"a": {"size": "1"}}}), "not a format-2 manifest"),
    ):
        manifest.write_text(text)
        assert_one_error(generate(copy, tmp_path), 1, needle)
    outside = json.loads(good)
    outside["files"]["../secret"] = {"size": 1, "sha256": "0" * 64}
    manifest.write_text(json.dumps(outside))
    assert_one_error(generate(copy, tmp_path), 1, "../secret: points outside the folder")


def test_symlinked_component_outside_the_folder_is_refused(folder, tmp_path):
    copy = builders.copy_folder(folder, tmp_path / "engine")
    shutil.move(copy / "scheduler", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", copy / "scheduler")
    assert_one_error(
        generate(copy, tmp_path), 1, "scheduler/scheduler_config.json: points outside the folder"
    )
    # behind the manifest too (verify="none"): model_index.json's components must resolve inside
    with pytest.raises(FolderError, match="points scheduler at 'scheduler', outside the engine folder"):
        Pipeline.from_dir(copy, verify="none")


def test_a_folder_swapped_in_while_loading_is_loaded_whole(folder, tmp_path, monkeypatch):
    """What a build's atomic swap looks like to readers: the path names the old folder, then
    (one rename) the new one. A reader that was loading loads again; a reader that finished
    keeps its engines; nobody mixes the old transformer with the new scheduler."""
    from ptdit_runtime import pipeline as pipeline_module

    g = np.random.default_rng()
    old = builders.copy_folder(folder, tmp_path / "engine")
    new = builders.copy_folder(folder, tmp_path / ".staging")
    shift = float(g.uniform(0.3, 3.0))  # the new folder differs only in its scheduler
    (new / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"kind": "rflow", "transform_scale": shift})
    )
    builders.write_manifest(new)
    request = dict(steps=3, seed=int(g.integers(0, 1000)))
    want_old = Pipeline.from_dir(old, provider="cpu")("a red circle", **request).latents
    want_new = Pipeline.from_dir(new, provider="cpu")("a red circle", **request).latents
    assert np.abs(want_old - want_new).max() > 1e-4  # the two folders draw differently

    held = Pipeline.from_dir(old, provider="cpu")
    real, swapped = pipeline_module.load_engine, []

    def swap_during_load(*args, **kwargs):
        if not swapped:  # the build renames its staging folder over the old one mid-load
            os.rename(old, tmp_path / ".old")
            os.rename(new, old)
            swapped.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "load_engine", swap_during_load)
    fresh = Pipeline.from_dir(old, provider="cpu")
    assert swapped and fresh.scheduler.transform_scale == shift
    np.testing.assert_array_equal(fresh("a red circle", **request).latents, want_new)
    np.testing.assert_array_equal(held("a red circle", **request).latents, want_old)
    # a reader starting in the instant between the two renames gets a clear error
    os.rename(old, tmp_path / ".newer")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Pipeline.from_dir(old, provider="cpu")
