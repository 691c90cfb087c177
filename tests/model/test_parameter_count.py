"""The analytic parameter count (`ptdit-export presets`) equals the built module's count."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptdit_export.model import PTDiT, PTDiTConfig
from ptdit_export.model.config import ACTIVATIONS
from ptdit_export.model.presets import PRESETS, parameter_count

ROOT = Path(__file__).resolve().parents[2]


def real_count(config: PTDiTConfig) -> int:
    return sum(p.numel() for p in PTDiT(config).parameters())


def random_config(seed: int) -> PTDiTConfig:
    """Every field the module layout depends on, drawn at random (small enough to build)."""
    r = random.Random(seed)
    heads = r.choice([1, 2, 4])
    head_dim = 16 * r.randint(1, 3)
    window = r.choice([(1, 2, 2), (1, 4, 4), (2, 2, 2), (4, 2, 4)])
    return PTDiTConfig(
        num_heads=heads,
        head_dim=head_dim,
        cross_attention_dim=heads * head_dim,
        num_layers=r.randint(1, 3),
        in_channels=r.randint(1, 16),
        out_channels=r.randint(1, 16),
        patch_size=r.choice([1, 2, 4]),
        caption_channels=r.choice([None, r.randint(8, 100)]),
        activation_fn=r.choice(ACTIVATIONS),
        attention_bias=r.random() < 0.5,
        norm_elementwise_affine=r.random() < 0.5,
        shift_window=r.random() < 0.5,
        sample_size=r.choice([16, 32, 128]),  # 128: the resolution / aspect-ratio embedders exist
        compress_ratios=window,
        proxy_compress_ratios=window,
    )


@pytest.mark.parametrize("seed", range(12))
def test_random_configs(seed):
    config = random_config(seed)
    assert parameter_count(config) == real_count(config), config


@pytest.mark.parametrize(
    "name, change",
    [
        ("tiny", {}),
        ("tiny-video", {}),
        ("demo", {}),
        ("tiny", {"caption_channels": None}),  # no caption projection
        ("tiny", {"activation_fn": "geglu"}),  # the MLP's first projection doubles
        ("tiny-video", {"shift_window": False, "frame": 4}),
        ("tiny", {"sample_size": 128, "norm_elementwise_affine": True, "attention_bias": False}),
    ],
)
def test_small_presets_and_variants_built_for_real(name, change):
    config = PRESETS[name].config.replace(**change)
    assert parameter_count(config) == real_count(config)


def test_large_presets_match_the_meta_device_build():
    for name in ("small", "pt-dit-s", "pt-dit-xl-video"):
        config = PRESETS[name].config
        with torch.device("meta"):
            n = PTDiT(config).num_parameters()
        assert parameter_count(config) == n, name


def test_presets_command_imports_no_torch_and_readme_table_agrees():
    code = (
        "import sys; from ptdit_export.cli import main; main(['presets', '--json'], standalone_mode=False); "
    )
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False", "presets imported torch"
    readme = (ROOT / "README.md").read_text()
    for name, preset in PRESETS.items():
        row = re.search(rf"^\| `{re.escape(name)}` \| ([\d.]+)M \|", readme, re.MULTILINE)
        assert row, f"README's presets table has no row for {name}"
        assert float(row.group(1)) == round(parameter_count(preset.config) / 1e6, 1), name
