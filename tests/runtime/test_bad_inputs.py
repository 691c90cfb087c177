"""Every bad input to `generate` and the runtime gives one clear error, before heavy work.

CLI: exit 2 for bad options, 1 for failures, exactly one `Error:` line, no traceback. Library:
ValueError / FileNotFoundError (subclasses), never AttributeError, TypeError, IndexError or
ZeroDivisionError. Folder damage is made on copies of one tiny folder whose manifest is then
rewritten, so these tests reach the checks behind the manifest (the manifest's own checks are
in test_reliability.py).
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from ptdit_runtime import Pipeline
from tests.runtime import builders
from tests.runtime.builders import assert_one_error, run_cli


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return builders.engine_folder(tmp_path_factory.mktemp("bad-inputs") / "engine", weights=False)


def no_engines(monkeypatch):
    """Make loading engines fail loudly: the errors below must come before any engine loads."""

    def refuse(*args, **kwargs):
        raise AssertionError("an engine was loaded before the bad input was refused")

    monkeypatch.setattr(Pipeline, "from_dir", refuse)


@pytest.mark.parametrize(
    "args,code,needle",
    [
        (["--zoom", "100000"], 2, "zoom=100000 makes"),
        (["--fps", "0"], 2, "--fps"),
        (["--height", "0"], 2, "height=0 must be a positive multiple"),
        (["--height", "100000000"], 2, "limit of 16384 pixels"),
        (["--width", "-32"], 2, "width=-32"),
        (["--threads", "100000"], 2, "threads=100000"),
        (["--threads", "0"], 2, "threads=0"),
        (["--frames", "0"], 2, "frames must be a positive integer"),
        (["--guidance", "1e30"], 2, "guidance must be a finite number from 0 to 100"),
        (["--guidance", "nan"], 2, "guidance must be a finite number"),
        (["--steps", "0"], 2, "steps must be a positive integer"),
        (["--steps", "100000000"], 2, "steps must be a positive integer up to"),
        (["--seed", "-1"], 2, "seed must be an integer from 0"),
        (["-o", "picture.jpg"], 2, "write .png, .gif or .mp4"),
        (["-o", "latents.npy"], 2, "add --output latent"),
        (["--output", "latent", "-o", "x.png"], 2, "writes a .npy"),
        (["--embeds", "EMBEDS"], 2, "not both"),
        (["-o", "/proc/no/such/x.png"], 1, "cannot write /proc/no/such/x.png"),
        (["-o", "FILE/x.png"], 1, "cannot write"),
    ],
)
def test_bad_options_one_error_before_loading(folder, tmp_path, monkeypatch, args, code, needle):
    no_engines(monkeypatch)
    (tmp_path / "FILE").write_text("a file where a folder should be")
    np.save(tmp_path / "EMBEDS.npy", np.zeros((1, builders.MAX_LENGTH, 64), np.float32))
    args = [
        a.replace("FILE", str(tmp_path / "FILE")).replace("EMBEDS", str(tmp_path / "EMBEDS.npy"))
        for a in args
    ]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.png")]
    else:  # relative outputs land in tmp_path
        i = args.index("-o") + 1
        args[i] = args[i] if args[i].startswith("/") else str(tmp_path / args[i])
    result = run_cli("generate", "a red circle", "--engine-dir", str(folder), *args)
    assert_one_error(result, code, needle)
    assert not (tmp_path / "out.png").exists()


def test_read_only_output_folder_is_refused_before_generating(folder, tmp_path, monkeypatch):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the /proc case above covers an unwritable one)")
    no_engines(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    result = run_cli("generate", "a red circle", "--engine-dir", str(folder), "-o", str(ro / "x.png"))
    assert_one_error(result, 1, "cannot write")


def test_usage_errors_without_a_folder(tmp_path, monkeypatch):
    no_engines(monkeypatch)
    assert_one_error(run_cli("generate", "--engine-dir", str(tmp_path)), 2, "give a PROMPT")
    missing = tmp_path / "nowhere"
    assert_one_error(run_cli("generate", "x", "--engine-dir", str(missing)), 1, "does not exist")
    monkeypatch.chdir(tmp_path)  # no engines/<default> here
    assert_one_error(run_cli("generate", "x"), 1, "--engine-dir")


def damage(folder, tmp_path, rel: str, content) -> object:
    """A copy of FOLDER with REL replaced by CONTENT (bytes, JSON-able, or None to delete it), and
    a manifest rewritten over the damage (so only the checks behind the manifest can catch it)."""
    copy = builders.copy_folder(folder, tmp_path / "damaged")
    path = copy / rel
    if content is None:
        path.unlink()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))
    return builders.write_manifest(copy)


def truncated(folder, rel: str) -> bytes:
    data = (folder / rel).read_bytes()
    return data[: len(data) // 3]


def edited(folder, rel: str, **fields) -> dict:
    return json.loads((folder / rel).read_text()) | fields


FOLDER_CASES = {
    "no transformer config": ("transformer/config.json", None, "config.json is missing"),
    "no transformer model": ("transformer/model.onnx", None, "model.onnx does not exist"),
    "no export.json": ("transformer/export.json", None, "export.json is missing"),
    "truncated transformer": ("transformer/model.onnx", "truncate", "cannot be loaded by ONNX Runtime"),
    "truncated text encoder": ("text_encoder/model.onnx", "truncate", "cannot be loaded by ONNX Runtime"),
    "garbage tokenizer": ("tokenizer/tokenizer.json", b"\x00garbage{", "tokenizer.json is not a tokenizer"),
    "tokenizer config list": ("tokenizer/tokenizer_config.json", [1, 2], "holds a JSON list"),
    "model index list": ("model_index.json", ["transformer"], "holds a JSON list"),
    "transformer config list": ("transformer/config.json", [], "holds a JSON list"),
    "export list": ("transformer/export.json", [1], "holds a JSON list"),
    "scheduler list": ("scheduler/scheduler_config.json", ["rflow"], "holds a JSON list"),
    "vae config list": ("vae_decoder/config.json", [], "holds a JSON list"),
    "text config list": ("text_encoder/config.json", [], "holds a JSON list"),
    "spatial compression 0": (
        "vae_decoder/config.json",
        {"spatial_compression": 0},
        "'spatial_compression' must be >= 1",
    ),
    "spatial compression text": (
        "vae_decoder/config.json",
        {"spatial_compression": "8"},
        "'spatial_compression'",
    ),
    "no in_channels": ("transformer/config.json", {"in_channels": None}, "'in_channels'"),
    "bad profile": (
        "transformer/export.json",
        {"profiles": {"latent_height": "big"}},
        "profile 'latent_height'",
    ),
    "scheduler steps": ("scheduler/scheduler_config.json", {"num_train_timesteps": 0}, "num_train_timesteps"),
    "text max_length": ("text_encoder/config.json", {"max_length": 0}, "max_length"),
    "component outside": ("model_index.json", {"vae_decoder": "../outside"}, "outside the engine folder"),
    "component absolute": ("model_index.json", {"transformer": "/etc"}, "outside the engine folder"),
    "component not a name": ("model_index.json", {"scheduler": 3}, "is not a folder name"),
}


def _content(folder, rel, spec):
    if spec == "truncate":
        return truncated(folder, rel)
    if isinstance(spec, dict):
        return edited(folder, rel, **spec)
    return spec


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_damaged_folder_one_clear_error(folder, tmp_path, case):
    rel, spec, needle = FOLDER_CASES[case]
    copy = damage(folder, tmp_path, rel, _content(folder, rel, spec))
    if case == "component outside":  # a real folder outside, so only the containment check refuses it
        builders.copy_folder(folder / "vae_decoder", tmp_path / "outside")
    result = run_cli(
        "generate", "a red circle", "--engine-dir", str(copy), "--steps", "1", "-o", str(tmp_path / "x.png")
    )
    assert_one_error(result, 1, needle)
    assert not (tmp_path / "x.png").exists()
    # the library raises ValueError / FileNotFoundError with the same message
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        Pipeline.from_dir(copy, backend="onnxruntime", provider="cpu")("a red circle", steps=1)
    assert needle in str(err.value)


def test_overflowing_latents_stop_with_an_error(pipe, monkeypatch):
    """A transformer output that overflows (as an fp16 engine can) at a random step stops the loop
    there with an error naming guidance, steps and embeddings, instead of drawing a black picture."""
    g = np.random.default_rng()
    steps = int(g.integers(2, 6))
    bad_step = int(g.integers(0, steps))
    value = [np.inf, -np.inf, np.nan][g.integers(0, 3)]
    real, calls = pipe.transformer.run, []

    def overflowing(*args, **kwargs):
        out = real(*args, **kwargs)
        if len(calls) == bad_step:
            arr = out[pipe.output_name]
            arr[0, g.integers(0, 12), 0, g.integers(0, builders.LATENT), g.integers(0, builders.LATENT)] = (
                value
            )
        calls.append(1)
        return out

    monkeypatch.setattr(pipe.transformer, "run", overflowing)
    with pytest.raises(ValueError, match=f"NaN or infinite at step {bad_step + 1} of {steps}") as err:
        pipe("a red circle", steps=steps, guidance=float(g.uniform(2, 8)))
    assert all(word in str(err.value) for word in ("guidance", "steps", "embeddings"))
    assert len(calls) == bad_step + 1  # stopped at once


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_embeddings_are_refused(pipe, bad):
    g = np.random.default_rng()
    feats = g.standard_normal((2, builders.MAX_LENGTH, 64)).astype(np.float32)
    mask = np.ones((2, builders.MAX_LENGTH), np.int64)
    row, col = g.integers(0, 2), g.integers(0, builders.MAX_LENGTH)
    feats[row, col, g.integers(0, 64)] = bad
    with pytest.raises(ValueError, match="NaN or infinite") as err:
        pipe(prompt_embeds=(feats[:1], mask[:1]), negative_embeds=(feats[1:], mask[1:]), steps=1)
    assert ("negative_embeds" if row else "prompt_embeds") in str(err.value)


@pytest.mark.parametrize(
    "pair,needle",
    [
        ((np.zeros((1, 16, 63), np.float32), np.ones((1, 16))), "this engine takes [B, L, 64]"),
        ((np.zeros((1, 16, 64), np.float32), np.ones((1, 15))), "mask has shape"),
        ((np.zeros((1, 16, 64), np.float32), np.full((1, 16), 2)), "of 0/1"),
        ((np.zeros((16, 64), np.float32), np.ones((16,))), "features have shape"),
        ("not a pair", "must be a pair"),
    ],
)
def test_malformed_embeddings_are_refused(pipe, pair, needle):
    with pytest.raises(ValueError) as err:
        pipe(prompt_embeds=pair, guidance=1.0, steps=1, output="latent")
    assert needle in str(err.value)


def test_long_negative_prompt_warns_like_a_prompt(folder, pipe, caplog, tmp_path):
    long = " ".join(["blue square"] * 20)
    with caplog.at_level(logging.WARNING, logger="ptdit_runtime.text"):
        pipe("a red circle", negative_prompt=long, steps=1)
    assert "negative prompt 0 has 41 tokens" in caplog.text and "truncated" in caplog.text
    result = run_cli("generate", "a red circle", "--negative-prompt", long, "--engine-dir", str(folder),
                     "--steps", "1", "-o", str(tmp_path / "x.png"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: the negative prompt has 41 tokens; the text encoder takes 16" in result.output


def test_folder_without_text_encoder_and_vae_gives_cli_hints_and_runs_from_embeds(tmp_path):
    bare = builders.engine_folder(tmp_path / "bare", text=False, vae=False, weights=False)
    assert_one_error(
        run_cli("generate", "a red circle", "--engine-dir", str(bare)),
        2, "--text-encoder DIR", "--embeds FILE.npy", "--vae space-to-depth:S", "--output latent",
    )  # fmt: skip
    g = np.random.default_rng()
    feats = g.standard_normal((2, builders.MAX_LENGTH, 64)).astype(np.float32)
    mask = (np.arange(builders.MAX_LENGTH) < g.integers(1, builders.MAX_LENGTH, (2, 1))).astype(np.int64)
    np.savez(tmp_path / "cond.npz", features=feats[:1], mask=mask[:1])
    np.save(tmp_path / "uncond.npy", feats[1:])  # .npy: every token real
    guidance, seed = float(g.uniform(2, 6)), int(g.integers(0, 1000))
    out = tmp_path / "z.npy"
    result = run_cli("generate", "--embeds", str(tmp_path / "cond.npz"), "--negative-embeds", str(tmp_path / "uncond.npy"),
                     "--engine-dir", str(bare), "--output", "latent", "-o", str(out), "--steps", "2",
                     "--guidance", str(guidance), "--seed", str(seed))  # fmt: skip
    assert result.exit_code == 0, result.output
    pipe = Pipeline.from_dir(bare, backend="onnxruntime", provider="cpu")
    want = pipe(prompt_embeds=(feats[:1], mask[:1]), negative_embeds=(feats[1:], np.ones_like(mask[1:])),
                steps=2, guidance=guidance, seed=seed, output="latent").latents  # fmt: skip
    np.testing.assert_array_equal(np.load(out), want)
    # embeddings without negatives need guidance 1
    result = run_cli("generate", "--embeds", str(tmp_path / "cond.npz"), "--engine-dir", str(bare),
                     "--output", "latent", "-o", str(out))  # fmt: skip
    assert_one_error(result, 2, "--negative-embeds")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    result = run_cli("generate", "--embeds", str(tmp_path / "junk.npy"), "--engine-dir", str(bare),
                     "--guidance", "1", "--output", "latent", "-o", str(out))  # fmt: skip
    assert_one_error(result, 2, "junk.npy is not a .npy/.npz file")


def test_library_errors_are_value_or_file_errors(folder, tmp_path):
    """Bad arguments to the library itself: threads, verify, zoom, fps, save without pictures."""
    with pytest.raises(ValueError, match="threads=100000"):
        Pipeline.from_dir(folder, provider="cpu", threads=100000)
    with pytest.raises(ValueError, match="verify="):
        Pipeline.from_dir(folder, verify="maybe")
    from ptdit_runtime import media

    pixels = np.zeros((8, 8, 3), np.uint8)
    for kwargs, needle in (
        (dict(zoom=100000), "zoom=100000"),
        (dict(zoom=0), "zoom must"),
        (dict(fps=0), "fps must"),
    ):
        with pytest.raises(ValueError, match=needle):
            media.save(pixels, tmp_path / "x.gif", **kwargs)
    with pytest.raises(ValueError, match="latents are written as .npy"):
        media.save_latents(np.zeros(3), tmp_path / "x.png")
    assert not any(tmp_path.iterdir())


def test_tracebacks_only_with_vv(folder, tmp_path):
    copy = damage(folder, tmp_path, "transformer/config.json", [])
    args = ["generate", "x", "--engine-dir", str(copy), "-o", str(tmp_path / "x.png")]
    assert_one_error(run_cli(*args), 1, "holds a JSON list")
    assert_one_error(run_cli("-v", *args), 1, "holds a JSON list")
    result = run_cli("-vv", *args)  # the exception itself reaches the caller (click prints its traceback)
    assert isinstance(result.exception, ValueError) and "holds a JSON list" in str(result.exception)


def test_damaged_torch_weights_are_one_clear_error(engine_dir, tmp_path):
    copy = damage(
        engine_dir,
        tmp_path,
        "transformer/model.safetensors",
        truncated(engine_dir, "transformer/model.safetensors"),
    )
    with pytest.raises((ValueError, FileNotFoundError), match="cannot read weights"):
        Pipeline.from_dir(copy, backend="torch")
    result = run_cli(
        "generate", "x", "--engine-dir", str(copy), "--backend", "torch", "-o", str(tmp_path / "x.png")
    )
    assert_one_error(result, 1, "model.safetensors", "cannot read weights")
