"""One build at a time per folder: a second process's build waits with a message, gives up
after --lock-timeout, or fails at once with --no-wait; a dead holder never blocks anyone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from ptdit_export.builder import staging
from ptdit_export.builder.lock import BuildLocked, build_lock, lock_path
from ptdit_export.builder.pipeline import build
from ptdit_export.cli import main
from tests.builder.conftest import CLI_ARGS, COMPONENTS, SEED, SETTINGS, snapshot
from tests.builder.test_atomic import ROOT, env

HOLD = """
import sys, time
from pathlib import Path
from ptdit_export.builder.lock import build_lock
with build_lock(Path(sys.argv[1]), timeout=0):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(folder, seconds: float) -> subprocess.Popen:
    """Another process holding FOLDER's build lock for SECONDS."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)],
        env=env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_no_wait_fails_at_once_naming_the_other_build(folder):
    holder = hold_lock(folder, 60)
    try:
        before = snapshot(folder)
        start = time.monotonic()
        result = CliRunner().invoke(main, ["build", *CLI_ARGS, "--out", str(folder), "--no-wait"])
        assert time.monotonic() - start < 30
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"Error: another build (pid {holder.pid}) is writing")
        assert "Traceback" not in result.output and snapshot(folder) == before
    finally:
        stop(holder)


def test_a_second_build_gives_up_after_the_timeout(folder):
    holder = hold_lock(folder, 60)
    try:
        start = time.monotonic()
        with pytest.raises(BuildLocked, match=f"pid {holder.pid}"):
            build("tiny", folder, SETTINGS, seed=SEED, components=COMPONENTS, lock_timeout=1.0)
        assert 1.0 <= time.monotonic() - start < 30
    finally:
        stop(holder)


def test_a_second_build_waits_with_a_message_then_runs(folder, monkeypatch, caplog):
    holder = hold_lock(folder, 2)
    monkeypatch.setenv(staging.FAIL_ENV, "locked")  # stop as soon as this build holds the lock
    try:
        start = time.monotonic()
        with caplog.at_level("INFO", logger="ptdit_export"), pytest.raises(staging.InjectedFailure):
            build("tiny", folder, SETTINGS, seed=SEED, components=COMPONENTS, lock_timeout=60)
        assert holder.wait(timeout=30) == 0  # the holder finished before this build went on
        assert time.monotonic() - start >= 1.0
        assert f"another build (pid {holder.pid}) is writing" in caplog.text
    finally:
        stop(holder)


def test_a_killed_holder_releases_the_lock(folder):
    holder = hold_lock(folder, 60)
    stop(holder)  # SIGKILL: no cleanup ran
    with build_lock(folder, timeout=0) as path:
        assert path == lock_path(folder) and path.read_text().strip() == str(os.getpid())
