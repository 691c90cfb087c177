"""Build manifests: what an engine was built from, so an unchanged rebuild is a cache hit.

The key hashes everything that decides the engine's bytes: the model source (preset and seed,
or the checkpoint files' names, sizes and modification times), the export and build settings,
this package's version, the backend's version and the device. The manifest is written last,
atomically, so an interrupted build never looks complete.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ptdit_export import __version__
from ptdit_export.export.artifacts import read_json, write_json

MANIFEST = "manifest.json"


def source_fingerprint(source: dict[str, Any]) -> dict[str, Any]:
    """The source plus, for files, their sizes and modification times."""
    out = dict(source)
    for key in ("checkpoint", "config"):
        if key in source:
            path = Path(source[key])
            files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file())
            out[f"{key}_files"] = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    return out


def build_key(**parts: Any) -> str:
    blob = json.dumps({"ptdit_export": __version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def is_cache_hit(folder: Path, key: str) -> bool:
    """True when FOLDER holds a manifest with this key and every file it lists is present."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = read_json(path)
    except ValueError:
        return False
    return manifest.get("key") == key and all((Path(folder) / f).is_file() for f in manifest.get("files", []))


def write_manifest(folder: Path, key: str, files: list[str], **info: Any) -> dict:
    manifest = {"key": key, "ptdit_export": __version__, "files": files, **info}
    write_json(Path(folder) / MANIFEST, manifest)
    return manifest
