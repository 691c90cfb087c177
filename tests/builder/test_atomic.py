"""A build replaces the folder all at once or not at all: failures at every stage, os._exit,
SIGKILL and SIGTERM of real processes, a full disk (injected ENOSPC and a real small tmpfs)
leave the previous folder byte-identical and generating the same pixels."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ptdit_export.builder import staging
from ptdit_export.builder.pipeline import build
from ptdit_export.cli import main
from ptdit_runtime.manifest import check_folder
from tests.builder.conftest import CLI_ARGS, COMPONENTS, SEED, SETTINGS, fast_exporter, pixels, snapshot

ROOT = Path(__file__).resolve().parents[2]
BEFORE_SWAP = [s for s in staging.STAGES if s != "swapped"]


def env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(ROOT / "runtime"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def leftovers(folder: Path) -> list[str]:
    return sorted(
        p.name
        for p in folder.parent.iterdir()
        if p.name.startswith(f".{folder.name}.") and "lock" not in p.name
    )


def assert_unchanged(folder: Path, before: dict[str, bytes], want_pixels: np.ndarray) -> None:
    assert snapshot(folder) == before
    check_folder(folder, full=True)
    np.testing.assert_array_equal(pixels(folder), want_pixels)


@pytest.fixture
def reference(folder):
    return snapshot(folder), pixels(folder)


def test_a_failure_at_every_stage_leaves_the_previous_folder(folder, reference, monkeypatch):
    monkeypatch.setattr("ptdit_export.export.transformer.onnx_from_model", fast_exporter(folder))
    for stage in BEFORE_SWAP:
        monkeypatch.setenv(staging.FAIL_ENV, stage)
        with pytest.raises(staging.InjectedFailure, match=stage):
            build("tiny", folder, SETTINGS, seed=SEED + 1, components=COMPONENTS)  # another key
        assert_unchanged(folder, *reference)
        assert leftovers(folder) == [], stage
    # after the swap the folder is the new build (complete and valid), the old one is gone
    monkeypatch.setenv(staging.FAIL_ENV, "swapped")
    with pytest.raises(staging.InjectedFailure):
        build("tiny", folder, SETTINGS, seed=SEED + 1, components=COMPONENTS)
    assert check_folder(folder, full=True)["source"]["seed"] == SEED + 1
    assert leftovers(folder) == []


def _killed_build(folder: Path, stage: str) -> subprocess.CompletedProcess:
    """A real process building into FOLDER that dies by os._exit(9) at STAGE."""
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from tests.builder import conftest as c
        import ptdit_export.export.transformer as t
        t.onnx_from_model = c.fast_exporter(Path({str(folder)!r}))
        from ptdit_export.builder.pipeline import build
        build("tiny", {str(folder)!r}, c.SETTINGS, seed=c.SEED + 1, components=c.COMPONENTS)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env() | {staging.FAIL_ENV: f"{stage}:exit"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["components", "swap"])
def test_a_process_dying_mid_build_leaves_the_previous_folder(folder, reference, stage):
    done = _killed_build(folder, stage)
    assert done.returncode == 9, done.stderr[-2000:]
    assert_unchanged(folder, *reference)
    assert len(leftovers(folder)) == 1  # its staging folder, which nothing reads ...
    monkeypatch_free = CliRunner().invoke(main, ["build", *CLI_ARGS, "--out", str(folder)])
    assert "up to date" in monkeypatch_free.output  # ... and the next build removes
    assert leftovers(folder) == []


def test_a_crash_between_the_two_renames_is_repaired_by_the_next_build(folder, reference):
    old = folder.with_name(f".{folder.name}.old-12345")
    os.rename(folder, old)  # the state a crash of the two-rename fallback can leave
    result = CliRunner().invoke(main, ["build", *CLI_ARGS, "--out", str(folder)])
    assert result.exit_code == 0 and "up to date" in result.output, result.output
    assert_unchanged(folder, *reference)
    assert leftovers(folder) == []


def test_the_two_rename_fallback_swaps_too(folder, reference, monkeypatch):
    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)  # no RENAME_EXCHANGE here
    monkeypatch.setattr("ptdit_export.export.transformer.onnx_from_model", fast_exporter(folder))
    build("tiny", folder, SETTINGS, seed=SEED + 1, components=COMPONENTS)
    assert check_folder(folder, full=True)["source"]["seed"] == SEED + 1
    assert leftovers(folder) == []


def _cli_build(folder: Path, *extra: str) -> subprocess.Popen:
    cli = [sys.executable, "-c", "from ptdit_export.cli import main; main()"]
    args = [*cli, "build", *CLI_ARGS, "--out", str(folder), *extra]
    # the trace cache off: the export must still be running when the signal comes
    slow = env() | {"PTDIT_EXPORT_TRACE_CACHE": "0"}
    return subprocess.Popen(args, env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_staging(proc: subprocess.Popen, folder: Path, timeout: float = 240) -> Path:
    """The staging folder of PROC, once the export into it has begun."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        found = list(folder.parent.glob(f".{folder.name}.staging-{proc.pid}"))
        if found:
            time.sleep(0.5)  # into the export
            return found[0]
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no staging folder appeared: {proc.communicate()[1][-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_real_build_killed_by_a_signal_leaves_the_previous_folder(folder, reference, sig):
    proc = _cli_build(folder, "--seed", str(SEED + 2))
    try:
        _wait_for_staging(proc, folder)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_unchanged(folder, *reference)
    if sig == signal.SIGTERM:  # caught: one error line, its own staging folder removed
        assert proc.returncode == 1 and "Error: the build was stopped (SIGTERM)" in err, err[-2000:]
        assert "Traceback" not in err and leftovers(folder) == []
    else:
        assert proc.returncode == -signal.SIGKILL and len(leftovers(folder)) == 1


def test_a_full_disk_leaves_the_previous_folder_and_no_partial_files(folder, reference, monkeypatch):
    monkeypatch.setattr("ptdit_export.export.transformer.onnx_from_model", fast_exporter(folder))

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    result = CliRunner().invoke(main, ["build", *CLI_ARGS[:-1], str(SEED + 1), "--out", str(folder)])
    monkeypatch.undo()
    assert result.exit_code == 1
    assert result.output.startswith("Error: No space left on device") and "is unchanged" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert_unchanged(folder, *reference)
    assert leftovers(folder) == []


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
        )
    except FileNotFoundError:
        return False
    return done.returncode == 0


def test_a_real_full_tmpfs_leaves_the_previous_folder(engine, tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    size = sum(p.stat().st_size for p in engine.rglob("*") if p.is_file())
    if not _mount_tmpfs(disk, f"{size * 3 // 2 // 1024}k"):  # room for one folder, not two
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")
    try:
        folder = disk / "engine"
        shutil.copytree(engine, folder)
        before, want = snapshot(folder), pixels(folder)
        monkeypatch.setattr("ptdit_export.export.transformer.onnx_from_model", fast_exporter(engine))
        result = CliRunner().invoke(main, ["build", *CLI_ARGS[:-1], str(SEED + 1), "--out", str(folder)])
        assert result.exit_code == 1 and result.output.startswith("Error: "), result.output
        assert "Traceback" not in result.output
        assert_unchanged(folder, before, want)
        assert leftovers(folder) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_permissions_follow_the_umask(folder, monkeypatch):
    monkeypatch.setattr("ptdit_export.export.transformer.onnx_from_model", fast_exporter(folder))
    previous = os.umask(0o027)
    try:
        build("tiny", folder, SETTINGS, seed=SEED + 1, components=COMPONENTS)
    finally:
        os.umask(previous)
    modes = {p.relative_to(folder).as_posix(): p.stat().st_mode & 0o777 for p in [folder, *folder.rglob("*")]}
    assert modes["."] == 0o750 and modes["manifest.json"] == 0o640
    assert all(m == (0o750 if (folder / rel).is_dir() else 0o640) for rel, m in modes.items()), modes


def test_ctrl_c_leaves_the_previous_folder(folder, reference, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ptdit_export.export.transformer.onnx_from_model", interrupted)
    result = CliRunner().invoke(main, ["build", *CLI_ARGS[:-1], str(SEED + 1), "--out", str(folder)])
    assert result.exit_code == 1 and result.output == f"Error: interrupted; {folder} is unchanged\n"
    assert_unchanged(folder, *reference)
    assert leftovers(folder) == []
