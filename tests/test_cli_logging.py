"""Other libraries' noise (torch's exporter warnings, library log records, transformers' progress
bars) only with -vv; ours at INFO by default. Each case runs in a fresh interpreter, as the CLI does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# configure as `ptdit-export [-v...]` does, then import torch and transformers (which set up their
# own handlers) and log the way they do during an export
SCRIPT = """
import logging, sys
from ptdit_export.cli import configure_logging
configure_logging(int(sys.argv[1]))
import torch
from transformers.utils import logging as transformers_logging
logging.getLogger("torch.onnx._internal.exporter._registration").warning("torchvision is not installed")
logging.getLogger("onnx_ir.passes").warning("library warning")
logging.getLogger("onnx_ir.passes").error("library error")
logging.getLogger("ptdit_export.export.transformer").info("our progress")
logging.getLogger("ptdit_export.export.transformer").debug("our detail")
print("bars", transformers_logging.is_progress_bar_enabled())
"""


def run(verbose: int) -> tuple[str, str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(verbose)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout, out.stderr


@pytest.mark.parametrize("verbose", [0, 2])
def test_other_libraries_only_with_vv(verbose):
    stdout, stderr = run(verbose)
    assert "our progress" in stderr and "library error" in stderr
    assert ("our detail" in stderr) == (verbose >= 1)
    assert ("torchvision is not installed" in stderr) == (verbose >= 2)
    assert ("library warning" in stderr) == (verbose >= 2)
    assert f"bars {verbose >= 2}" in stdout
