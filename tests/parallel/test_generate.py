"""`generate --parallel 2` (two gloo ranks) writes the picture a single-process torch generate
writes, on a small engine folder made on the spot; and the usage errors of --parallel."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ptdit_export.cli import main
from ptdit_export.parallel.launch import spawn
from tests.runtime import builders

PROMPT = "a red circle on a blue background"


@functools.cache
def torch_folder() -> Path:
    """Engine folder for the torch backend: tiny PTDiT weights (no ONNX transformer),
    the tiny T5 text encoder export, a space-to-depth VAE and rflow."""
    from safetensors.torch import save_file

    from ptdit_export.export.artifacts import update_model_index, write_json
    from ptdit_export.export.vae import SpaceToDepthVAE

    root = builders.scratch() / "parallel-engine"
    model = builders.tiny_model()
    (root / "transformer").mkdir(parents=True)
    write_json(root / "transformer" / "config.json", model.config.to_dict())
    save_file(model.state_dict(), str(root / "transformer" / "model.safetensors"))
    update_model_index(root, transformer="transformer")
    for name in ("text_encoder", "tokenizer"):
        import shutil

        shutil.copytree(builders.text_export() / name, root / name)
    update_model_index(root, text_encoder="text_encoder", tokenizer="tokenizer")
    SpaceToDepthVAE(builders.FACTOR).onnx_decoder(root)
    write_json(root / "scheduler" / "scheduler_config.json", {"kind": "rflow"})
    update_model_index(root, scheduler="scheduler")
    return builders.write_manifest(root, backend="torch")


ARGS = ["--steps", "4", "--height", "64", "--width", "32", "--seed", "3", "--zoom", "1"]


def run_cli(rank: int, folder: str, out: str, extra: list[str]) -> tuple[int, str]:
    """One rank of `generate --parallel` (the spawned processes' body)."""
    result = CliRunner().invoke(main, ["generate", PROMPT, "--engine-dir", folder, "-o", out, *extra])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.mark.slow
def test_parallel_generate_writes_the_single_process_picture(tmp_path):
    from PIL import Image

    folder = torch_folder()
    single = CliRunner().invoke(
        main, ["generate", PROMPT, "--engine-dir", str(folder), "--backend", "torch", "-o",
               str(tmp_path / "single.png"), *ARGS],
    )  # fmt: skip
    assert single.exit_code == 0, single.output
    out = str(tmp_path / "parallel.png")
    results = spawn(run_cli, 2, (str(folder), out, [*ARGS, "--parallel", "2"]), timeout=150)
    assert [code for code, _ in results] == [0, 0], results
    assert "window-sharded over 2 cpu processes, 32x64 px" in results[0][1]
    assert "wrote" not in results[1][1] and "INFO" not in results[1][1]  # one log: rank 0's
    a = np.asarray(Image.open(out))
    b = np.asarray(Image.open(tmp_path / "single.png"))
    assert a.shape == b.shape == (64, 32, 3)
    assert b.std() > 0  # a picture, not a constant
    assert np.array_equal(a, b), f"{int((a != b).sum())} of {a.size} values differ"


def test_parallel_usage_errors(monkeypatch, tmp_path):
    folder = str(torch_folder())
    base = ["generate", PROMPT, "--engine-dir", folder, "-o", str(tmp_path / "x.png"), *ARGS]
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    res = CliRunner().invoke(main, [*base, "--parallel", "2"])
    assert res.exit_code == 2 and "launch with torchrun --nproc-per-node 2" in res.output, res.output
    monkeypatch.setenv("WORLD_SIZE", "3")
    res = CliRunner().invoke(main, [*base, "--parallel", "3"])  # 64 px: 4 window rows
    assert res.exit_code == 1, res.output
    assert "Error: --parallel 3 cannot split 4 window rows" in res.output
    assert "valid P for this size: 1, 2, 4" in res.output
    res = CliRunner().invoke(main, [*base, "--parallel", "3", "--backend", "onnxruntime"])
    assert res.exit_code == 2 and "drop --backend onnxruntime" in res.output, res.output
    assert not os.path.exists(tmp_path / "x.png")
