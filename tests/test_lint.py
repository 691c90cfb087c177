"""The README's lint command passes (`ruff check .` and `ruff format --check .` from the repo
root), and the README's Commands table lists every `ptdit-export` command.

ruff is in the test extra (pinned in pyproject.toml), so CI always runs this; it skips only
where ruff is not installed at all.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff_command() -> list[str] | None:
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    exe = shutil.which("ruff")
    return [exe] if exe else None


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff(args):
    ruff = ruff_command()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    proc = subprocess.run([*ruff, *args, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff {' '.join(args)} failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"


def test_every_command_has_a_row_in_the_readme_commands_table():
    from ptdit_export.cli import main

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n\n", 2)[1]
    documented = {line.split("`ptdit-export ", 1)[1].split()[0].strip("`") for line in table.splitlines()[2:]}
    assert documented == set(main.commands), (
        f"README Commands table: {sorted(documented ^ set(main.commands))}"
    )
