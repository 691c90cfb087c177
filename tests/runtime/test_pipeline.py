"""Pipeline behaviour on a tiny engine folder: pictures, seeds, batches, guidance, backends, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ptdit_runtime import MissingComponent, Pipeline
from ptdit_runtime.noise import initial_noise
from tests.conftest import assert_close
from tests.runtime import builders

PROMPT = "a red circle on the blue background"
OTHER = "a small green square on the white background"


def test_generates_uint8_pictures_with_timings(pipe):
    out = pipe([PROMPT, OTHER], steps=4, guidance=4.0, seed=0)
    assert len(out.images) == 2
    for im in out.images:
        assert im.shape == (builders.PIXELS, builders.PIXELS, 3) and im.dtype == np.uint8
    assert out.latents.shape == (2, 12, 1, builders.LATENT, builders.LATENT)
    assert not np.array_equal(out.images[0], out.images[1])
    t = out.timings
    assert len(t.transformer) == 8  # 4 steps x 2 chunks (the static engine takes one prompt + guidance)
    assert t.text_encoder > 0 and t.vae > 0 and t.loop >= t.engine
    assert t.total >= t.text_encoder + t.loop + t.vae
    table = t.table()
    assert "transformer x 8" in table and "VAE decoder" in table and "Pipeline" in table


def test_pictures_are_the_decoded_latents(pipe):
    """uint8 pictures = round(255 * VAE(latents)); the space-to-depth VAE makes this exact to check."""
    out = pipe(PROMPT, steps=3, seed=2)
    z = out.latents[0, :, 0]  # (12, h, w): channel c*4 + dy*2 + dx
    pixels = z.reshape(3, 2, 2, builders.LATENT, builders.LATENT).transpose(0, 3, 1, 4, 2)
    pixels = pixels.reshape(3, builders.PIXELS, builders.PIXELS).transpose(1, 2, 0)
    expected = np.rint(np.clip((pixels + 1) / 2, 0, 1) * 255).astype(np.uint8)
    assert np.abs(out.images[0].astype(int) - expected.astype(int)).max() <= 1


def test_seeds_reproduce_and_differ(pipe):
    a = pipe(PROMPT, steps=3, seed=7).latents
    b = pipe(PROMPT, steps=3, seed=7).latents
    c = pipe(PROMPT, steps=3, seed=8).latents
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_noise_is_documented_pcg64_normal():
    want = np.random.Generator(np.random.PCG64(42)).standard_normal((12, 1, 4, 4), dtype=np.float32)
    np.testing.assert_array_equal(initial_noise([42], (12, 1, 4, 4))[0], want)


def test_a_batch_equals_its_prompts_one_by_one(pipe):
    both = pipe([PROMPT, OTHER], steps=3, seed=[5, 9]).latents
    one = pipe(PROMPT, steps=3, seed=5).latents
    two = pipe(OTHER, steps=3, seed=9).latents
    np.testing.assert_array_equal(both, np.concatenate([one, two]))
    # one integer seed s gives prompt i the seed s + i
    shifted = pipe([PROMPT, OTHER], steps=3, seed=5).latents[1]
    np.testing.assert_array_equal(shifted, pipe(OTHER, steps=3, seed=6).latents[0])


def test_negative_prompt_and_guidance(pipe):
    base = pipe(PROMPT, steps=3, seed=1).latents
    negative = pipe(PROMPT, negative_prompt="black triangle", steps=3, seed=1).latents
    assert np.abs(base - negative).max() > 1e-3
    # guidance 1 runs the conditional half alone: negative prompts no longer matter
    g1a = pipe([PROMPT, OTHER], negative_prompt="dark", guidance=1.0, steps=3, seed=1).latents
    g1b = pipe([PROMPT, OTHER], negative_prompt="bright", guidance=1.0, steps=3, seed=1).latents
    np.testing.assert_array_equal(g1a, g1b)


def test_prompt_embeds_instead_of_text(pipe):
    ids_mask = pipe.text_encoder([PROMPT, ""])
    text, mask = ids_mask
    via_embeds = pipe(
        prompt_embeds=(text[:1], mask[:1]), negative_embeds=(text[1:], mask[1:]), steps=3, seed=4
    ).latents
    via_text = pipe(PROMPT, steps=3, seed=4).latents
    np.testing.assert_array_equal(via_embeds, via_text)


def test_long_prompt_is_truncated_with_a_warning(pipe, caplog):
    long = " ".join(["red circle"] * 20)
    with caplog.at_level(logging.WARNING, logger="ptdit_runtime.text"):
        out = pipe(long, steps=2, seed=0)
    assert "truncated" in caplog.text and "41 tokens" in caplog.text
    assert out.images[0].shape == (builders.PIXELS, builders.PIXELS, 3)


def test_other_schedulers_run_through_the_pipeline(tmp_path):
    cfg = {"kind": "dpmpp2m", "prediction_type": "v_prediction", "beta_schedule": "scaled_linear"}
    folder = builders.engine_folder(tmp_path / "dpm", scheduler=cfg, weights=False)
    pipe = Pipeline.from_dir(folder, backend="onnxruntime", provider="cpu")
    assert pipe.scheduler.kind == "dpmpp2m"
    out = pipe(PROMPT, steps=5, seed=0, output="float")
    assert np.isfinite(out.latents).all() and out.images[0].dtype == np.float32
    assert 0.0 <= out.images[0].min() and out.images[0].max() <= 1.0


def test_torch_backend_pipeline_matches_onnxruntime(engine_dir, pipe):
    reference = Pipeline.from_dir(engine_dir, backend="torch")
    assert reference.transformer.backend == "torch"
    want = reference(PROMPT, steps=4, seed=3).latents
    got = pipe(PROMPT, steps=4, seed=3).latents
    assert_close(got, want, 1e-3, "pipeline latents, onnxruntime vs torch backend")


def test_video_through_the_torch_backend(tmp_path):
    """A video-window model (tiny-video) needs no ONNX export with the torch backend."""
    import json

    from safetensors.torch import save_file

    from ptdit_export.export.source import randomise_
    from ptdit_export.export.vae import SpaceToDepthVAE
    from ptdit_export.model import PTDiT

    model = randomise_(
        PTDiT.from_config("tiny-video", in_channels=12, out_channels=12, caption_channels=64), 1
    )
    folder = builders.engine_folder(tmp_path / "video", vae=False, weights=False)
    save_file(model.state_dict(), str(folder / "transformer" / "model.safetensors"))
    (folder / "transformer" / "config.json").write_text(json.dumps(model.config.to_dict()))
    (folder / "transformer" / "export.json").unlink()
    (folder / "transformer" / "model.onnx").unlink()
    SpaceToDepthVAE(builders.FACTOR).onnx_decoder(folder)
    builders.write_manifest(folder, "torch")
    pipe = Pipeline.from_dir(folder, backend="torch")
    with pytest.raises(ValueError, match="use_timestep_transform"):
        pipe.check(PROMPT, frames=4, height=16, width=16)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        '{"kind": "rflow", "use_timestep_transform": false}'
    )
    builders.write_manifest(folder, "torch")
    pipe = Pipeline.from_dir(folder, backend="torch")
    out = pipe(PROMPT, steps=3, frames=4, height=16, width=16, seed=0)
    assert out.images[0].shape == (4, 16, 16, 3)
    paths = out.save(tmp_path / "clip.gif")
    assert paths[0].stat().st_size > 0


# ------------------------------------------------------------------ bad input, before any work
@pytest.fixture
def no_work(pipe, monkeypatch):
    """Make any engine call fail loudly, so errors are shown to come before any work."""

    def forbidden(*args, **kwargs):
        raise AssertionError("an engine ran before the request was rejected")

    monkeypatch.setattr(pipe.transformer, "run", forbidden)
    monkeypatch.setattr(pipe.text_encoder.engine, "run", forbidden)
    monkeypatch.setattr(pipe.vae.engine, "run", forbidden)
    return pipe


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(steps=0), "steps must be a positive integer"),
        (dict(steps=-3), "steps must be a positive integer"),
        (dict(steps=2.5), "steps must be a positive integer"),
        (dict(height=33), "height=33 must be a positive multiple of 16 pixels"),
        (dict(width=40), "nearest valid: 32 or 48"),
        (dict(height=64), "outside the engine's profile 32..32"),
        (dict(frames=2), "frames"),
        (dict(guidance=-1.0), "guidance must be a finite number"),
        (dict(guidance=float("nan")), "guidance must be a finite number"),
        (dict(guidance=1e30), "guidance must be a finite number from 0 to 100"),
        (dict(height=0), "height=0 must be a positive multiple"),
        (dict(height=100_000_000), "above the runtime's limit of 16384 pixels"),
        (dict(frames=0), "frames must be a positive integer"),
        (dict(seed=-1), "seed must be an integer from 0"),
        (dict(seed="x"), "seed must be an integer from 0"),
        (dict(output="jpeg"), "output 'jpeg'"),
        (dict(negative_prompt=["a", "b"]), "2 negative prompts for 1 prompts"),
        (dict(seed=[1, 2]), "2 seeds for 1 prompts"),
    ],
)
def test_bad_requests_fail_before_any_work(no_work, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        no_work(PROMPT, **kwargs)


def test_guidance_needs_a_batch_the_static_engine_takes(no_work):
    with pytest.raises(ValueError, match="fixed input shape"):
        no_work(PROMPT, guidance=1.0)


def test_missing_components(tmp_path):
    with pytest.raises(MissingComponent, match="does not exist"):
        Pipeline.from_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        Pipeline.from_dir(tmp_path / "empty")
    with pytest.raises(MissingComponent, match="no transformer"):
        Pipeline.from_dir(tmp_path / "empty", verify="none")
    bare = builders.engine_folder(tmp_path / "bare", text=False, vae=False, weights=False)
    pipe = Pipeline.from_dir(bare, backend="onnxruntime", provider="cpu")
    with pytest.raises(ValueError, match="no vae_decoder") as err:
        pipe(PROMPT, steps=2)
    assert "no text_encoder" in str(err.value)
    g = np.random.default_rng(0)
    text, mask = (
        g.standard_normal((2, builders.MAX_LENGTH, 64)).astype(np.float32),
        np.ones((2, 16), np.int64),
    )
    out = pipe(
        prompt_embeds=(text[:1], mask[:1]), negative_embeds=(text[1:], mask[1:]), steps=2, output="latent"
    )
    assert out.images == [] and out.latents.shape == (1, 12, 1, builders.LATENT, builders.LATENT)
