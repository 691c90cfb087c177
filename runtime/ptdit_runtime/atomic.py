"""Files written all at once: a temporary file beside the target, fsync, then one rename.

A full disk, an exception or Ctrl-C while writing never replaces an existing file with a
partial one and leaves no partial file behind (the temporary file is removed). The temporary
name is hidden (`.NAME.RANDOM.tmp.SUFFIX`, the suffix kept for writers that pick the format
by it); a process killed outright can leave one, and the next write of the same path removes
those older than `STALE_S`. Files are created with the umask's permissions, like `open`.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

STALE_S = 600.0  # a temporary file this old belongs to no running writer


class OutputNotWritable(ValueError):
    """The output path cannot be written (read-only folder, a file in the way, ...)."""


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(path: Path) -> None:
    now = time.time()
    for old in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
        try:
            if now - old.stat().st_mtime > STALE_S:
                old.unlink()
                log.info("removed %s, left by an interrupted write", old)
        except OSError:
            pass


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside PATH to write; when the block ends without error it is
    fsynced and renamed over PATH (then the folder is fsynced), else removed."""
    path = Path(path)
    _remove_stale(path)
    tmp = temp_path(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        _fsync(path.parent)
    except OSError:  # some file systems cannot fsync a folder; the rename is done either way
        pass


def check_writable(path: str | Path) -> Path:
    """Make PATH's folder and prove a file can be created there (by creating and removing one),
    so a generation never runs only to fail at the end. Raises OutputNotWritable."""
    path = Path(path)
    if path.is_dir():
        raise OutputNotWritable(f"{path} is a folder; name a file to write (e.g. {path / 'out.png'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = temp_path(path)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        probe.unlink()
    except OSError as err:
        raise OutputNotWritable(
            f"cannot write {path}: {err.strerror or err}; pick a writable folder for the output"
        ) from None
    return path
