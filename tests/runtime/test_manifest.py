"""The folder manifest against hashlib and the files on disk."""

import hashlib
import json

import pytest

from ptdit_runtime import manifest as mf


def _folder(tmp_path):
    root = tmp_path / "engine"
    (root / "transformer").mkdir(parents=True)
    (root / "transformer" / "model.onnx").write_bytes(b"\x08\x01graph" * 100)
    (root / "model_index.json").write_text("{}")
    (root / ".transformer.x.partial").mkdir()  # staging: never part of the folder
    (root / ".transformer.x.partial" / "junk").write_text("x")
    manifest = {"format": mf.FORMAT, "files": mf.records_for(root)}
    (root / mf.MANIFEST).write_text(json.dumps(manifest))
    return root


def test_records_hash_every_visible_file(tmp_path):
    root = _folder(tmp_path)
    recs = mf.records_for(root)
    assert sorted(recs) == ["model_index.json", "transformer/model.onnx"]
    data = (root / "transformer" / "model.onnx").read_bytes()
    assert recs["transformer/model.onnx"] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert mf.check_folder(root, full=True)["format"] == mf.FORMAT


@pytest.mark.parametrize("damage", ["delete", "truncate", "alter", "extra"])
def test_damage_is_found(tmp_path, damage):
    root = _folder(tmp_path)
    onnx = root / "transformer" / "model.onnx"
    if damage == "delete":
        onnx.unlink()
    elif damage == "truncate":
        onnx.write_bytes(onnx.read_bytes()[:10])
    elif damage == "alter":
        data = bytearray(onnx.read_bytes())
        data[5] ^= 1
        onnx.write_bytes(bytes(data))
    else:
        (root / "transformer" / "stray.bin").write_bytes(b"1")
    fast = mf.problems(root, mf.read_manifest(root))
    assert bool(fast) == (damage in ("delete", "truncate"))  # the fast check reads sizes only
    with pytest.raises(mf.FolderError, match="model.onnx|stray.bin") as err:
        mf.check_folder(root, full=True)
    assert "--force" in str(err.value)


def test_missing_or_bad_manifest(tmp_path):
    root = _folder(tmp_path)
    (root / mf.MANIFEST).write_text("[1, 2]")
    with pytest.raises(mf.FolderError, match="format-2"):
        mf.check_folder(root)
    (root / mf.MANIFEST).write_text("{not json")
    with pytest.raises(mf.FolderError, match="not valid JSON"):
        mf.check_folder(root)
    (root / mf.MANIFEST).unlink()
    with pytest.raises(FileNotFoundError, match="ptdit-export build"):
        mf.check_folder(root)


def test_entries_cannot_leave_the_folder(tmp_path):
    root = _folder(tmp_path)
    (tmp_path / "secret").write_text("x")
    manifest = mf.read_manifest(root)
    manifest["files"]["../secret"] = mf.file_record(tmp_path / "secret")
    (root / mf.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(mf.FolderError, match="outside"):
        mf.check_folder(root)
