"""One tiny engine folder for the build-reliability tests, built once per session, and helpers:
copy it, fingerprint it, generate pixels from it, rebuild with a fast exporter."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ptdit_export.builder.pipeline import BuildSettings
from ptdit_export.builder.profiles import ShapeRange

# the settings `ptdit-export build -m tiny --backend onnxruntime --precision fp32 --prompts 1,1,2
# --seed 3` resolves to (so CLI rebuilds of the folder are cache hits); no text encoder or VAE
# (tiny's latents have 4 channels): the pixels compared are the final latents
SETTINGS = BuildSettings(
    backend="onnxruntime",
    precision="fp32",
    shapes=ShapeRange(prompts=(1, 1, 2), text_len=(1, 200, 512)),
    vae_scale=8,
)
COMPONENTS = {"text_encoder": None, "vae": None}
SEED = 3
CLI_ARGS = [
    "-m",
    "tiny",
    "--backend",
    "onnxruntime",
    "--precision",
    "fp32",
    "--prompts",
    "1,1,2",
    "--seed",
    "3",
]


@pytest.fixture(scope="session")
def engine(tmp_path_factory) -> Path:
    from ptdit_export.builder.pipeline import build

    out = tmp_path_factory.mktemp("built") / "tiny"
    build("tiny", out, SETTINGS, seed=SEED, components=COMPONENTS)
    return out


@pytest.fixture
def folder(engine, tmp_path) -> Path:
    """A private copy of the engine folder (tests may break it)."""
    out = tmp_path / "engine"
    shutil.copytree(engine, out)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below FOLDER, hidden ones included, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def pixels(folder: Path, seed: int = 7) -> np.ndarray:
    """The final latents of a two-step generation from random prompt embeddings (the folder has
    no text encoder and no VAE)."""
    from ptdit_runtime import Pipeline

    g = np.random.default_rng(seed)
    embeds = (g.standard_normal((1, 6, 64)).astype(np.float32), np.ones((1, 6), np.int64))
    negative = (np.zeros((1, 6, 64), np.float32), np.ones((1, 6), np.int64))
    pipe = Pipeline.from_dir(folder, backend="onnxruntime", provider="cpu")
    try:
        out = pipe(
            steps=2, guidance=3.0, seed=seed, output="latent", prompt_embeds=embeds, negative_embeds=negative
        )
    finally:
        pipe.close()
    return out.latents


def fast_exporter(template: Path):
    """A stand-in for onnx_from_model that copies TEMPLATE's transformer into the staging folder
    (the tests of staging and swapping need a build that gets past the export quickly; the
    export itself is tested in tests/export)."""

    def export(model, out_dir, settings, source=None):
        from ptdit_export.export.artifacts import atomic_dir, update_model_index

        with atomic_dir(Path(out_dir) / "transformer") as tmp:
            for name in ("model.onnx", "config.json", "export.json"):
                shutil.copyfile(template / "transformer" / name, tmp / name)
        update_model_index(out_dir, transformer="transformer")
        return Path(out_dir) / "transformer" / "model.onnx"

    return export
