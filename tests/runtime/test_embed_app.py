"""samples/embed_app.py runs against a tiny engine folder (so the sample cannot rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE = Path(__file__).parents[2] / "samples" / "embed_app.py"


def test_embed_app_generates_each_prompt(engine_dir, tmp_path):
    prompts = ["a red circle on the blue background", "a green square", "a white triangle, left"]
    result = subprocess.run(
        [sys.executable, str(SAMPLE), "--engine-dir", str(engine_dir), "--out", str(tmp_path), "--steps", "3",
         "--backend", "onnxruntime", *prompts],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("loaded") == 1  # loaded once for all prompts
    files = sorted(tmp_path.glob("*.png"))
    assert [f.name for f in files] == ["000.png", "001.png", "002.png"]
    pictures = [np.asarray(Image.open(f)) for f in files]
    assert all(p.shape == (32, 32, 3) for p in pictures)
    assert not np.array_equal(pictures[0], pictures[1])
