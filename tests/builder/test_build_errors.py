"""Every bad `build` input: one `Error: ...` line naming the option and the fix, exit 2 for
usage and 1 for failures, checked before any heavy work, the folder untouched; a traceback
only with -vv. Sharded-checkpoint indexes and model_index.json cannot reach outside."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ptdit_export.cli import main
from ptdit_export.export.artifacts import update_model_index
from ptdit_export.model.checkpoint import CheckpointError, read_weights
from tests.builder.conftest import CLI_ARGS, snapshot

BAD = {
    "vae spec": (["--vae", "space-to-depth:abc"], "--vae space-to-depth:abc: S must be a whole number"),
    "vae folder": (["--vae", "/nonexistent/vae"], "--vae /nonexistent/vae: not a diffusers AutoencoderKL"),
    "vae scale 0": (["--vae-scale", "0"], "--vae-scale 0: give pixels per latent"),
    "vae scale vs spec": (
        ["--vae", "space-to-depth:2", "--vae-scale", "4"],
        "--vae-scale 4 contradicts --vae space-to-depth:2",
    ),
    "prompts words": (["--prompts", "a,b,c"], "--prompts 'a,b,c': give one whole number or min,opt,max"),
    "prompts order": (["--prompts", "4,2,1"], "--prompts 4,2,1: give one value or min,opt,max"),
    "prompts huge": (["--prompts", "100000"], "--prompts 100000,100000,100000: needs 1 <= min"),
    "height 0": (["--height", "0"], "--height 0,0,0: needs 1 <= min"),
    "height huge": (["--height", "100000000"], "--height 100000000,100000000,100000000: needs"),
    "height window": (["--height", "36"], "36 px is not a multiple of VAE scale * patch * window"),
    "frames 0": (["--frames", "0"], "--frames 0,0,0: needs 1 <= min"),
    "text len": (["--text-len", "1,2"], "--text-len 1,2: give one value or min,opt,max"),
    "model": (["-m", "/nonexistent/model"], "--model '/nonexistent/model' is neither a preset"),
    "text encoder": (["--text-encoder", "/nonexistent/t5"], "--text-encoder /nonexistent/t5: no config.json"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_options_are_one_usage_error_before_any_work(folder, case):
    args, message = BAD[case]
    before = snapshot(folder)
    result = CliRunner().invoke(main, ["build", *CLI_ARGS, *args, "--out", str(folder)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and message in result.output, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert snapshot(folder) == before
    assert not list(folder.parent.glob(f".{folder.name}.staging-*"))


def test_a_bad_text_encoder_is_refused_before_the_export(tmp_path, folder):
    encoder = tmp_path / "t5"
    encoder.mkdir()
    no_config = CliRunner().invoke(
        main, ["build", *CLI_ARGS, "--text-encoder", str(encoder), "--out", str(folder)]
    )
    assert no_config.exit_code == 2 and "no config.json there" in no_config.output
    (encoder / "config.json").write_text("{}")
    (encoder / "tokenizer.json").write_text("garbage")
    garbage = CliRunner().invoke(
        main, ["build", *CLI_ARGS, "--text-encoder", str(encoder), "--out", str(folder)]
    )
    assert garbage.exit_code == 2 and "is not a tokenizer" in garbage.output, garbage.output


def test_an_unusable_out_is_refused(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for out, message in (
        (blocker / "engine", "is a file, not a folder"),
        (blocker, "is a file; give a folder"),
    ):
        result = CliRunner().invoke(main, ["build", *CLI_ARGS, "--out", str(out)])
        assert result.exit_code == 2 and result.output.startswith("Error: --out") and message in result.output
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"\xff\xd8")
    result = CliRunner().invoke(main, ["build", *CLI_ARGS, "--out", str(other)])
    assert result.exit_code == 2 and "holds other files" in result.output
    assert (other / "holiday.jpg").read_bytes() == b"\xff\xd8"


def test_a_traceback_only_with_vv(folder):
    quiet = CliRunner().invoke(main, ["build", *CLI_ARGS, "--vae-scale", "0", "--out", str(folder)])
    assert quiet.exit_code == 2 and quiet.exception is None or isinstance(quiet.exception, SystemExit)
    loud = CliRunner().invoke(main, ["-vv", "build", *CLI_ARGS, "--vae-scale", "0", "--out", str(folder)])
    assert isinstance(loud.exception, ValueError) and "--vae-scale 0" in str(loud.exception)


def test_a_sharded_index_cannot_reach_outside_its_folder(tmp_path):
    from safetensors.torch import save_file

    outside = tmp_path / "outside.safetensors"
    save_file({"w": torch.ones(2)}, str(outside))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_file({"v": torch.zeros(3)}, str(ckpt / "part-1.safetensors"))
    index = ckpt / "model.safetensors.index.json"
    cases = {
        "../outside.safetensors": "not a .safetensors file inside",
        str(outside): "not a .safetensors file inside",
        "/etc/passwd": "not a .safetensors file inside",
        "missing.safetensors": "which is missing",
    }
    for shard, message in cases.items():
        index.write_text(json.dumps({"weight_map": {"v": "part-1.safetensors", "w": shard}}))
        with pytest.raises(CheckpointError, match=message):
            read_weights(index)
    index.write_text(json.dumps({"weight_map": ["part-1.safetensors"]}))
    with pytest.raises(CheckpointError, match="no 'weight_map'"):
        read_weights(index)
    index.write_text(json.dumps({"weight_map": {"v": "part-1.safetensors"}}))
    assert torch.equal(read_weights(index)["v"], torch.zeros(3))


def test_model_index_entries_stay_inside_the_folder(tmp_path):
    for bad in ("../elsewhere", "/abs/path"):
        with pytest.raises(ValueError, match="must be a folder inside"):
            update_model_index(tmp_path, vae_decoder=bad)
    assert update_model_index(tmp_path, vae_decoder="vae_decoder")["vae_decoder"] == "vae_decoder"
