"""The engine folder's manifest: every file with its size and sha256, written last by `build`.

`manifest.json` sits at the folder's root. It is the truth about the folder: a file that is
missing, has another size or (with a full check) another hash than the manifest says makes the
folder invalid, and nothing loads it. Standard library only, so apps can check a folder without
torch or onnx.

    {"format": 2, "key": "<sha256 of the build inputs>", "backend": "onnxruntime", ...,
     "files": {"transformer/model.onnx": {"size": 123, "sha256": "..."}, ...}}
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 2
IGNORED = (MANIFEST, ".lock")  # at the root: the manifest itself and the build lock


class FolderError(ValueError):
    """The folder does not match its manifest (or has none that can be read)."""


class MissingManifest(FolderError, FileNotFoundError):
    """The folder has no manifest: it was not written by `ptdit-export build`, or the build failed."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | Path) -> dict[str, Any]:
    return {"size": os.path.getsize(path), "sha256": sha256_file(path)}


def folder_files(folder: str | Path) -> list[str]:
    """Every regular file below FOLDER (relative, '/'-separated, sorted), less the manifest and
    lock and anything hidden (temporary files, staging folders)."""
    root = Path(folder)
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or str(rel) in IGNORED:
            continue
        if path.is_file() and not path.is_symlink():
            out.append(rel.as_posix())
    return sorted(out)


def records_for(folder: str | Path) -> dict[str, dict[str, Any]]:
    root = Path(folder)
    return {rel: file_record(root / rel) for rel in folder_files(root)}


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise MissingManifest(
            f"{folder} has no {MANIFEST}: it is not a complete engine folder; "
            f"build it with `ptdit-export build --out {folder}`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FolderError(
            f"{path} is not valid JSON ({err}); rebuild with `ptdit-export build --force`"
        ) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
        for v in files.values()
    ):
        raise FolderError(
            f"{path} is not a format-{FORMAT} manifest (no 'files' with size and sha256); "
            "rebuild with `ptdit-export build --force`"
        )
    return manifest


def problems(folder: str | Path, manifest: dict[str, Any], full: bool = False) -> list[str]:
    """What is wrong with FOLDER against MANIFEST: missing files and wrong sizes; with FULL also
    wrong hashes and files the manifest does not list. Empty when the folder is intact."""
    root = Path(folder).resolve()
    found = []
    for rel, want in manifest["files"].items():
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            found.append(f"{rel}: points outside the folder")
        elif not path.is_file():
            found.append(f"{rel}: missing")
        elif path.stat().st_size != want["size"]:
            found.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {want['size']}")
        elif full and sha256_file(path) != want["sha256"]:
            found.append(f"{rel}: content differs from the manifest (sha256)")
    if full:
        found += [f"{rel}: not in the manifest" for rel in folder_files(root) if rel not in manifest["files"]]
    return found


def check_folder(folder: str | Path, full: bool = False) -> dict[str, Any]:
    """The folder's manifest, after checking every file it lists (sizes; with FULL, hashes too).
    Raises FolderError naming the first files that differ and the fix."""
    manifest = read_manifest(folder)
    found = problems(folder, manifest, full)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise FolderError(
            f"{folder} does not match its manifest: {'; '.join(found[:3])}{more}; "
            f"rebuild it with `ptdit-export build --out {folder} --force`"
        )
    return manifest
