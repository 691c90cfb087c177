"""Whole-folder replacement: build into a staging folder beside OUT, swap it in with one step.

    parent/
      NAME/                      the engine folder (the previous build until the swap)
      .NAME.staging-<pid>/       this build's output, complete with its manifest before the swap
      .NAME.lock                 the build lock (builder/lock.py)

The swap is `renameat2(RENAME_EXCHANGE)` where the kernel and file system offer it (one atomic
step: NAME is the old folder, then the new one). Elsewhere it is two renames, NAME ->
.NAME.old-<pid>, staging -> NAME; a crash between them leaves the previous folder whole under
.NAME.old-<pid>, and the next build (holding the lock) renames it back before anything else.
Every staging or old folder found by a build holding the lock is stale and is removed.

`fail_point(stage)` is the test hook: with PTDIT_EXPORT_FAIL_AT=<stage> the build raises
InjectedFailure there, with PTDIT_EXPORT_FAIL_AT=<stage>:exit the process dies on the spot
(os._exit(9), like SIGKILL: no cleanup runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from ptdit_export.export.artifacts import fix_modes, fsync_path

log = logging.getLogger(__name__)

FAIL_ENV = "PTDIT_EXPORT_FAIL_AT"
STAGES = ("options", "locked", "export", "engine", "components", "manifest", "swap", "swapped")
RENAME_EXCHANGE = 2


class InjectedFailure(RuntimeError):
    """Raised at the stage named by PTDIT_EXPORT_FAIL_AT (tests only)."""


def fail_point(stage: str) -> None:
    want = os.environ.get(FAIL_ENV, "")
    name, _, how = want.partition(":")
    if name != stage:
        return
    if how == "exit":
        os._exit(9)
    raise InjectedFailure(f"injected failure at build stage {stage!r} ({FAIL_ENV})")


def staging_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.staging-{os.getpid()}")


def old_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.old-{os.getpid()}")


def recover(out: Path) -> None:
    """Under the lock: put back a folder a crash left half-swapped, remove stale staging folders."""
    olds = sorted(out.parent.glob(f".{out.name}.old-*"))
    if not out.exists() and olds:
        log.warning("restoring %s from %s (a build stopped between two renames)", out, olds[-1])
        os.rename(olds[-1], out)
        olds = olds[:-1]
    for stale in [*olds, *out.parent.glob(f".{out.name}.staging-*")]:
        log.info("removing %s, left by an interrupted build", stale)
        shutil.rmtree(stale, ignore_errors=True)


def seal(folder: Path) -> None:
    """Permissions from the umask, and every file and folder flushed to the disk."""
    fix_modes(folder)
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        fsync_path(path)
    fsync_path(folder)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT/SIGTERM wait until the block is done (the swap is never cut in half)."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where renameat2 or RENAME_EXCHANGE is unavailable."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, f"cannot swap {b} into {a}: {os.strerror(err)}")


def swap_in(staging: Path, out: Path, on_commit: Callable[[], None] = lambda: None) -> None:
    """Make STAGING the folder OUT in one step and remove the previous OUT. ON_COMMIT runs
    right after the step, before any held signal is delivered."""
    with signals_held():
        fail_point("swap")
        if not out.exists():
            os.rename(staging, out)
            previous = None
        elif _exchange(out, staging):
            previous = staging  # now holds the previous folder
        else:
            previous = old_dir(out)
            os.rename(out, previous)
            os.rename(staging, out)
        on_commit()
        fsync_path(out.parent)
    fail_point("swapped")
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
