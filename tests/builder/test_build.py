"""The build command: profiles, the manifest cache, backend choice, and the ONNX Runtime path."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from ptdit_export.builder.pipeline import build, resolve_backend
from ptdit_export.builder.profiles import ShapeRange, input_shapes
from ptdit_export.builder.tensorrt import TensorRTUnavailable, tensorrt_available
from ptdit_export.cli import main
from ptdit_export.export.source import model_from_source
from ptdit_export.model import load_config
from tests.builder.conftest import COMPONENTS, SEED, SETTINGS

TINY = load_config("tiny")


def test_profiles_double_the_batch_for_guidance_and_use_latent_sizes():
    shapes = ShapeRange(prompts=(1, 2, 4), height=(128, 128, 256), width=(64, 128, 192), text_len=(1, 16, 64))
    p = shapes.graph_profiles(TINY, vae_scale=8)
    assert (p["batch"].min, p["batch"].opt, p["batch"].max) == (2, 4, 8)
    assert (p["latent_height"].min, p["latent_height"].max) == (16, 32)
    trt = input_shapes(TINY, p)
    assert trt["hidden_states"] == ((2, 4, 1, 16, 8), (4, 4, 1, 16, 16), (8, 4, 1, 32, 24))
    assert trt["encoder_hidden_states"][2] == (8, 64, 64)
    assert ShapeRange(prompts=(1, 1, 1), cfg=False).graph_profiles(TINY, 8)["batch"].max == 1


def test_sizes_the_windows_do_not_divide_name_valid_ones():
    with pytest.raises(ValueError, match=r"multiple of VAE scale \* patch \* window = 64: use 64 or 128"):
        ShapeRange(height=(100, 100, 100)).graph_profiles(TINY, 8)


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")
def test_tensorrt_backend_without_tensorrt_names_what_to_install():
    with pytest.raises(TensorRTUnavailable, match="install TensorRT"):
        resolve_backend("tensorrt")
    assert resolve_backend("auto") == "onnxruntime"


@pytest.fixture
def built(folder):
    """A copy of the session's tiny ONNX Runtime folder (tests/builder/conftest.py)."""
    return folder, SETTINGS, json.loads((folder / "manifest.json").read_text())


def test_onnxruntime_build_runs_and_matches_pytorch(built):
    out, _, manifest = built
    root = out / "transformer"
    assert manifest["backend"] == "onnxruntime" and all((out / f).is_file() for f in manifest["files"])
    index = json.loads((out / "model_index.json").read_text())
    assert index["transformer"] == "transformer" and index["scheduler"] == "scheduler"
    session = ort.InferenceSession(str(root / "model.optimized.onnx"), providers=["CPUExecutionProvider"])
    model = model_from_source(manifest["source"])
    g = torch.Generator().manual_seed(0)
    x, t, e = (
        torch.randn(2, 4, 1, 16, 24, generator=g),
        torch.tensor([3.0, 700.0]),
        torch.randn(2, 9, 64, generator=g),
    )
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[1, 4:] = 0
    got = session.run(
        None,
        {
            "hidden_states": x.numpy(),
            "timestep": t.numpy(),
            "encoder_hidden_states": e.numpy(),
            "encoder_attention_mask": mask.numpy(),
        },
    )[0]
    with torch.no_grad():
        want = model(x, t, e, mask).numpy()
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


def test_unchanged_rebuild_is_a_cache_hit_and_changes_rebuild(built, monkeypatch):
    out, settings, first = built
    again = build("tiny", out, settings, seed=SEED, components=COMPONENTS)
    assert again.get("cache_hit") and again["key"] == first["key"]
    calls = []
    monkeypatch.setattr(
        "ptdit_export.export.transformer.onnx_from_model",
        lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(RuntimeError("rebuild")),
    )
    with pytest.raises(RuntimeError, match="rebuild"):
        build("tiny", out, settings, seed=SEED + 1, components=COMPONENTS)  # another model source
    assert calls
    calls.clear()
    (out / "transformer" / "model.optimized.onnx").unlink()  # a listed file is gone
    with pytest.raises(RuntimeError, match="rebuild"):
        build("tiny", out, settings, seed=SEED, components=COMPONENTS)
    assert calls


def test_cli_build_reports_missing_tensorrt(tmp_path):
    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    result = CliRunner().invoke(main, ["build", "--backend", "tensorrt", "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "install TensorRT" in result.output
