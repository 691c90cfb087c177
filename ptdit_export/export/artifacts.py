"""Writing artifacts so a crash never leaves a half-written one that looks valid.

Every component folder is written into a temporary sibling and renamed into place in one
step; files go through a temporary file, fsync and os.replace. Permissions follow the umask
(files 0666 & ~umask, folders 0777 & ~umask), whichever library wrote the bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ptdit_export import __version__


def umask() -> int:
    """The process's umask, read without changing it where /proc allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fix_modes(root: Path) -> None:
    """Files 0666 & ~umask, folders 0777 & ~umask below and at ROOT (writers such as mkstemp
    and onnx's external data create 0600 files)."""
    mask = umask()
    root = Path(root)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def fsync_path(path: Path) -> None:
    """Flush one file's or folder's data to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Write PATH atomically: a temporary file beside it, fsync, rename; the previous file (if
    any) stays whole on any failure, and no temporary file is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)


def write_json(path: Path, data: Any) -> None:
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: is this a folder written by ptdit-export?") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the command that wrote it") from err


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `final` in one rename. (Inside a build's
    staging folder this only keeps half-written components out of sight; the build swaps the
    whole folder.)"""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
    try:
        yield tmp
        fix_modes(tmp)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def update_model_index(root: Path, **components: str | None) -> dict:
    """Merge component entries into ROOT/model_index.json (Optimum-style pipeline folder)."""
    path = Path(root) / "model_index.json"
    index = read_json(path) if path.exists() else {"_class_name": "PTDiTPipeline"}
    index["_ptdit_export_version"] = __version__
    for name, sub in components.items():
        if sub is not None and (Path(sub).is_absolute() or ".." in Path(sub).parts):
            raise ValueError(f"model_index.json: component {name} -> {sub!r} must be a folder inside {root}")
    index.update(components)
    write_json(path, index)
    return index
