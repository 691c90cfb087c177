"""Every test file on disk is collected: pytest's own collection (a subprocess) against the disk.

pytest silently skips folders matching `norecursedirs` (by default `build`, `dist`, `*.egg`,
`venv`, dot-folders, ...); tests/build/ never ran because of it. A file that is dropped, by a
folder name, a `collect_ignore` or a changed `testpaths`, fails here by name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a module skipped as a whole (importorskip, allow_module_level) is reported with -rs, not listed
_SKIPPED_MODULE = re.compile(r"^SKIPPED \[\d+\] (\S+?\.py)\b", re.MULTILINE)


def files_on_disk(root: Path) -> set[str]:
    """tests/**/test_*.py and tests/**/*_test.py (pytest's default python_files), relative to root."""
    tests = root / "tests"
    found = set(tests.rglob("test_*.py")) | set(tests.rglob("*_test.py"))
    return {p.relative_to(root).as_posix() for p in found if "__pycache__" not in p.parts}


def files_collected(root: Path) -> set[str]:
    """The files pytest collects from `root` with its own configuration (run as CI runs it)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-rs", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    # 0: collected, 5: nothing collected; anything else is a collection error worth reading
    assert proc.returncode in (0, 5), (
        f"pytest --collect-only failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
    )
    listed = {line.split("::", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    return listed | set(_SKIPPED_MODULE.findall(proc.stdout))


def missing_files(root: Path) -> list[str]:
    return sorted(files_on_disk(root) - files_collected(root))


def test_every_test_file_is_collected():
    missing = missing_files(ROOT)
    assert not missing, (
        f"pytest does not collect {', '.join(missing)}: rename the folder (norecursedirs skips "
        "build, dist, venv, ...) or fix testpaths/collect_ignore"
    )


def test_a_file_in_a_build_folder_is_reported(tmp_path):
    """The check itself can fail: pytest's default norecursedirs drops tests/build/."""
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    for folder in ("tests", "tests/build", "tests/ok"):
        (tmp_path / folder).mkdir(exist_ok=True)
    for name in ("tests/build/test_dropped.py", "tests/ok/test_kept.py"):
        (tmp_path / name).write_text("def test_one():\n    pass\n")
    (tmp_path / "tests/ok/test_skipped_module.py").write_text(
        "import pytest\npytest.skip('not here', allow_module_level=True)\n"
    )
    assert files_on_disk(tmp_path) == {
        "tests/build/test_dropped.py",
        "tests/ok/test_kept.py",
        "tests/ok/test_skipped_module.py",
    }
    assert missing_files(tmp_path) == ["tests/build/test_dropped.py"]
