"""Config reading, presets, the window schedule, and input validation errors."""

from __future__ import annotations

import json

import pytest
import torch

from ptdit_export.model import PTDiT, PTDiTConfig, load_config, window_schedule
from ptdit_export.model.presets import PRESETS

RELEASED_PREDICTOR = {
    "model_id": "ptdit",
    "num_heads": 16,
    "head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 28,
    "dropout": 0.0,
    "cross_attention_dim": 1152,
    "attention_bias": True,
    "sample_size": 32,
    "frame": 1,
    "patch_size": 2,
    "activation_fn": "gelu-approximate",
    "norm_type": "ada_norm_single",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 4096,
    "compress_ratios": [1, 8, 8],
    "proxy_compress_ratios": [1, 8, 8],
    "shift_window": True,
    "dtype": "bf16",
}


def test_official_predictor_block_and_whole_config(tmp_path):
    assert PTDiTConfig.from_dict(RELEASED_PREDICTOR) == PRESETS["qihoo-t2x-1.1b"].config
    path = tmp_path / "inference.json"
    path.write_text(json.dumps({"predictor": RELEASED_PREDICTOR, "text_encoder": {}}))
    assert load_config(path).hidden_size == 1152
    assert PTDiT.from_config("tiny").config == PRESETS["tiny"].config


def test_released_parameter_count():
    with torch.device("meta"):
        n = PTDiT.from_config("qihoo-t2x-1.1b").num_parameters()
    assert 1.10e9 < n < 1.16e9  # the release: 1.13 billion


def test_huge_preset_is_1_8b_within_10_percent():
    with torch.device("meta"):
        n = PTDiT.from_config("pt-dit-h").num_parameters()
    assert abs(n / 1.8e9 - 1) < 0.10


@pytest.mark.parametrize(
    "change,match",
    [
        ({"norm_type": "layer_norm"}, "norm_type"),
        ({"activation_fn": "relu"}, "activation_fn"),
        ({"cross_attention_dim": 64}, "cross_attention_dim"),
        ({"proxy_compress_ratios": [1, 16, 16]}, "proxy_compress_ratios"),
        ({"compress_ratios": [1, 0, 8]}, "compress_ratios"),
        ({"num_heads": 3, "head_dim": 10, "cross_attention_dim": 30}, "multiple of 16"),
    ],
)
def test_values_that_cannot_be_honoured_are_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        PTDiTConfig.from_dict({**RELEASED_PREDICTOR, **change})


def test_unknown_preset_or_file():
    with pytest.raises(ValueError, match="neither a preset"):
        load_config("no-such-model")


def test_window_schedule_of_the_paper():
    assert [window_schedule(r) for r in (256, 512, 1024, 2048)] == [
        (1, 2, 2),
        (1, 4, 4),
        (1, 8, 8),
        (1, 16, 16),
    ]
    assert window_schedule(512, frames=16) == (4, 4, 4)


@pytest.fixture(scope="module")
def tiny():
    return PTDiT.from_config("tiny").eval()


def test_grid_not_divisible_names_valid_sizes(tiny):
    with pytest.raises(
        ValueError,
        match=r"height=20 is not a multiple of patch\*window = 2\*4 = 8 \(nearest valid: 16 or 24\)",
    ):
        tiny(torch.randn(1, 4, 1, 20, 16), torch.tensor([1.0]), torch.randn(1, 3, 64))


def test_wrong_channels_caption_width_and_rank(tiny):
    with pytest.raises(ValueError, match="in_channels=4"):
        tiny(torch.randn(1, 3, 1, 16, 16), torch.tensor([1.0]), torch.randn(1, 3, 64))
    with pytest.raises(ValueError, match=r"\[B, L, 64\]"):
        tiny(torch.randn(1, 4, 1, 16, 16), torch.tensor([1.0]), torch.randn(1, 3, 48))
    with pytest.raises(ValueError, match=r"\[B, C, F, H, W\]"):
        tiny(torch.randn(1, 4, 16, 16), torch.tensor([1.0]), torch.randn(1, 3, 64))
    with pytest.raises(ValueError, match="timestep"):
        tiny(torch.randn(2, 4, 1, 16, 16), torch.tensor([1.0]), torch.randn(2, 3, 64))


def test_video_frames_must_fit_temporal_window():
    m = PTDiT.from_config("tiny-video")
    with pytest.raises(ValueError, match="frames=3"):
        m(torch.randn(1, 4, 3, 8, 8), torch.tensor([1.0]), torch.randn(1, 3, 64))
