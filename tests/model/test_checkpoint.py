"""Checkpoint loading: formats, containers, prefixes, dtypes, and errors that name the keys."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ptdit_export.model import PTDiT, load_config
from ptdit_export.model.checkpoint import CheckpointError
from tests.conftest import randomise

CFG = load_config("tiny")


def write_config(folder, cfg=CFG, wrap=False):
    data = cfg.to_dict()
    data["dropout"] = 0.0  # an official field with no effect: ignored
    (folder / "config.json").write_text(json.dumps({"predictor": data} if wrap else data))


def inputs():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, 4, 1, 16, 16, generator=g),
        torch.tensor([500.0]),
        torch.randn(1, 5, 64, generator=g),
    )


@pytest.fixture
def model():
    return randomise(PTDiT(CFG)).eval()


def same_output(a, b):
    with torch.no_grad():
        return torch.equal(a(*inputs()), b(*inputs()))


@pytest.mark.parametrize(
    "fmt",
    ["pt", "pth-model-container", "state_dict-module-prefix", "safetensors", "sharded", "predictor-prefix"],
)
def test_round_trip(tmp_path, model, fmt):
    sd = model.state_dict()
    write_config(tmp_path, wrap=fmt == "sharded")
    if fmt == "pt":
        torch.save(sd, tmp_path / "model.pt")
    elif fmt == "pth-model-container":
        torch.save({"model": sd, "epoch": 3}, tmp_path / "model.pth")
    elif fmt == "state_dict-module-prefix":
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "model.pt")
    elif fmt == "predictor-prefix":
        torch.save({"predictor." + k: v for k, v in sd.items()}, tmp_path / "model.pt")
    elif fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "model.safetensors")
    else:
        keys = sorted(sd)
        half = len(keys) // 2
        shards = {"a.safetensors": keys[:half], "b.safetensors": keys[half:]}
        for name, ks in shards.items():
            save_file({k: sd[k].contiguous() for k in ks}, tmp_path / name)
        index = {"weight_map": {k: n for n, ks in shards.items() for k in ks}}
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = PTDiT.from_pretrained(tmp_path)
    assert same_output(model, loaded)


def test_official_saved_buffer_is_accepted(tmp_path, model):
    sd = dict(model.state_dict())
    sd["pos_embed.pos_embed"] = torch.zeros(1, 64, 32)  # the release saves this derived buffer
    write_config(tmp_path)
    torch.save(sd, tmp_path / "model.pt")
    assert same_output(model, PTDiT.from_pretrained(tmp_path))


def test_stored_and_requested_dtype(tmp_path, model):
    write_config(tmp_path)
    save_file(
        {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()},
        tmp_path / "model.safetensors",
    )
    assert PTDiT.from_pretrained(tmp_path).dtype == torch.bfloat16
    assert PTDiT.from_pretrained(tmp_path, dtype=torch.float32).dtype == torch.float32


def test_wrong_keys_are_named(tmp_path, model):
    sd = dict(model.state_dict())
    sd.pop("transformer_blocks.1.attn3.to_q.weight")
    sd["transformer_blocks.0.extra.weight"] = torch.zeros(1)
    write_config(tmp_path)
    torch.save(sd, tmp_path / "model.pt")
    with pytest.raises(
        CheckpointError, match=r"missing 1: transformer_blocks\.1\.attn3\.to_q\.weight.*unexpected 1"
    ):
        PTDiT.from_pretrained(tmp_path)


def test_config_that_does_not_match_weights_is_named(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "model.pt")
    write_config(tmp_path, CFG.replace(num_layers=3))
    with pytest.raises(CheckpointError, match=r"missing .*transformer_blocks\.2.*num_layers"):
        PTDiT.from_pretrained(tmp_path)
    write_config(tmp_path, CFG.replace(num_heads=4, cross_attention_dim=64))
    with pytest.raises(CheckpointError, match="wrong shape"):
        PTDiT.from_pretrained(tmp_path)


def test_corrupt_and_missing_files(tmp_path, model):
    write_config(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        PTDiT.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        PTDiT.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "config.json").unlink()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="no config.json"):
        PTDiT.from_pretrained(tmp_path / "w.pt")


def test_load_state_dict_takes_official_names_and_wrappers(model):
    fresh = PTDiT(CFG)
    fresh.load_state_dict({"module." + k: v for k, v in model.state_dict().items()})
    assert same_output(model, fresh.eval())
