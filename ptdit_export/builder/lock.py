"""One build at a time per engine folder: an advisory fcntl.flock on `.NAME.lock` beside it.

The lock file lives in the parent folder (it survives the swap of NAME) and is never removed:
removing it would let a waiting build and a new one lock two different files. The kernel
drops the lock when its holder exits, killed or not, so a crash never leaves the folder locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


class BuildLocked(RuntimeError):
    """Another build holds the folder's lock (and we may not, or did not long enough, wait)."""


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


@contextlib.contextmanager
def build_lock(out: Path, timeout: float | None = 600.0, poll: float = 0.2) -> Iterator[Path]:
    """Hold the lock of engine folder OUT. timeout: seconds to wait for another build (0: fail
    at once, None: wait forever). Raises BuildLocked naming the holder's pid and the fix."""
    path = lock_path(Path(out))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        start, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                waited = time.monotonic() - start
                if timeout is not None and waited >= timeout:
                    fix = (
                        f"waited {waited:.0f} s; raise --lock-timeout"
                        if timeout
                        else "drop --no-wait to wait"
                    )
                    raise BuildLocked(
                        f"another build (pid {holder}) is writing {out}; let it finish or stop it ({fix})"
                    ) from None
                if not told:
                    log.warning("another build (pid %s) is writing %s; waiting for it", holder, out)
                    told = True
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
