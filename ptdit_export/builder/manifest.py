"""Build manifests: what an engine folder holds and what it was built from.

The root `manifest.json` (format in ptdit_runtime.manifest) lists every file of the folder with
its size and sha256 and carries a key over the real inputs, kept per part so a rebuild can say
what changed:

- source: the preset and seed, or the sha256 of every checkpoint / config file (content, not
  names or mtimes; a preset's shipped weights included),
- components: the text encoder, VAE and scheduler sources, hashed the same way,
- settings: the resolved build options, with the backend actually built (not "auto"),
- facts: ptdit_export's version, the backend's version, the provider or device.

The manifest is sealed with the sha256 of its own canonical JSON, so a hand-edited manifest
(a "backend" changed to "tensorrt") is never trusted as a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from ptdit_export import __version__
from ptdit_export.export.artifacts import read_json, write_json
from ptdit_runtime import manifest as rm

log = logging.getLogger(__name__)

MANIFEST = rm.MANIFEST


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()


def digest(data: Any) -> str:
    return hashlib.sha256(_canonical(data)).hexdigest()


def tree_hash(path: str | Path) -> str:
    """sha256 over a file's content, or over a folder's (relative name, content hash) pairs,
    symbolic links followed (Hugging Face caches link into blobs/); hidden files are left out.
    A weights file is hashed with the config.json beside it, which the loader reads too."""
    path = Path(path)
    if path.is_file():
        config = path.with_name("config.json")
        pairs = [(path.name, rm.sha256_file(path))]
        if config.is_file() and config != path:
            pairs.append((config.name, rm.sha256_file(config)))
        return digest(pairs)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    files = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    return digest([(rel, rm.sha256_file(path / rel)) for rel in files])


def source_fingerprint(source: dict[str, Any]) -> dict[str, Any]:
    """The source plus the content hash of its checkpoint / config files."""
    out = dict(source)
    for key in ("checkpoint", "config"):
        if key in source:
            out[f"{key}_sha256"] = tree_hash(source[key])
    return out


def components_fingerprint(components: dict[str, Any]) -> dict[str, Any]:
    """Each component source with its content hash where it is a path."""
    out: dict[str, Any] = {}
    for name, value in sorted(components.items()):
        if isinstance(value, (str, Path)) and not str(value).startswith("space-to-depth:"):
            out[name] = {"path": str(value), "sha256": tree_hash(value)}
        else:
            out[name] = value
    return out


def input_parts(**parts: Any) -> dict[str, str]:
    """One hash per input part (source, components, settings, facts) plus this package's version."""
    return {"ptdit_export": __version__} | {name: digest(value) for name, value in parts.items()}


def build_key(**parts: Any) -> str:
    return digest(input_parts(**parts))


def seal_of(manifest: dict[str, Any]) -> str:
    return digest({k: v for k, v in manifest.items() if k not in ("seal", "cache_hit")})


def cache_status(out: Path, key: str, parts: dict[str, str], backend: str) -> str | None:
    """None when OUT is a complete, unchanged build of this key for BACKEND; else what differs."""
    if not out.exists():
        return f"{out} does not exist yet"
    try:
        manifest = rm.read_manifest(out)
    except rm.FolderError as err:
        return f"no valid manifest ({err})"
    if manifest.get("seal") != seal_of(manifest):
        return f"{out / MANIFEST} was edited by hand (its seal does not match), so it is not trusted"
    if manifest.get("key") != key:
        old = manifest.get("inputs") or {}
        changed = sorted(name for name in parts if old.get(name) != parts[name]) or ["the build key"]
        return "the inputs changed: " + ", ".join(changed)
    if manifest.get("backend") != backend:
        return f"it was built for {manifest.get('backend')}, not {backend}"
    found = rm.problems(out, manifest, full=True)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        return "files changed: " + "; ".join(found[:3]) + more
    return None


def write_folder_manifest(folder: Path, key: str, parts: dict[str, str], **info: Any) -> dict:
    """FOLDER/manifest.json over every file now in FOLDER; written last by `build`."""
    manifest = {
        "format": rm.FORMAT,
        "key": key,
        "inputs": parts,
        "ptdit_export": __version__,
        **info,
        "files": rm.records_for(folder),
    }
    manifest["seal"] = seal_of(manifest)
    write_json(Path(folder) / MANIFEST, manifest)
    return manifest


# ----------------------------------------------------------------- component manifests (Ascend)
def is_cache_hit(folder: Path, key: str) -> bool:
    """True when FOLDER holds a manifest with this key and every file it lists is present
    (the Ascend builder's per-component manifest)."""
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
