"""Named configurations: the release, the paper's family, video, and small ones for tests.

Parameter counts in the README come from `ptdit-export presets`, which counts them from the
config (`parameter_count`, no torch; tests check it against the built modules).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptdit_export.model.config import PTDiTConfig


@dataclass(frozen=True)
class Preset:
    config: PTDiTConfig
    about: str
    weights: Path | None = None  # a folder shipped with the package; None: random weights
    components: dict[str, Any] = field(default_factory=dict)  # text_encoder / vae / scheduler it ships


def _family(heads: int, head_dim: int, layers: int, **kw) -> PTDiTConfig:
    d = heads * head_dim
    return PTDiTConfig(num_heads=heads, head_dim=head_dim, num_layers=layers, cross_attention_dim=d, **kw)


RELEASED = PTDiTConfig()  # Qihoo-T2X 1.1B text-to-image, as released

# The trained demo (ptdit_export/demo.py, samples/train_demo.py): 32 px pictures as 12 x 16 x 16
# space-to-depth latents, patch 2 -> 8 x 8 tokens in four 4 x 4 windows, four strided proxies per
# window, shifted windows and T5 cross-attention, so every part of PT-DiT carries trained weights.
DEMO_DIR = Path(__file__).resolve().parents[1] / "presets" / "demo"
DEMO = PTDiTConfig(
    num_heads=4,
    head_dim=32,
    num_layers=4,
    in_channels=12,
    out_channels=24,  # first half: the velocity, as in the release
    cross_attention_dim=128,
    caption_channels=64,
    sample_size=16,
    patch_size=2,
    compress_ratios=(1, 4, 4),
    proxy_compress_ratios=(1, 2, 2),
    shift_window=True,
)
_DEMO_SCALE = 2  # pixels per latent: space-to-depth 2
DEMO_COMPONENTS = {
    "text_encoder": str(DEMO_DIR / "text_encoder"),  # T5 weights with the tokenizer beside them
    "max_length": 16,  # caption tokens
    "vae": f"space-to-depth:{_DEMO_SCALE}",
    "vae_scale": _DEMO_SCALE,
    "scheduler": str(DEMO_DIR / "scheduler"),  # a folder holding scheduler_config.json
}

PRESETS: dict[str, Preset] = {
    "demo": Preset(
        DEMO,
        "trained demo shipped with the package: 32 px coloured shapes from captions",
        weights=DEMO_DIR,
        components=DEMO_COMPONENTS,
    ),
    "qihoo-t2x-1.1b": Preset(RELEASED, "released Qihoo-T2X text-to-image (= PT-DiT/XL), 1024 px"),
    "pt-dit-s": Preset(_family(6, 64, 12), "paper family, small"),
    "pt-dit-b": Preset(_family(12, 64, 12), "paper family, base"),
    "pt-dit-l": Preset(_family(16, 64, 24), "paper family, large"),
    "pt-dit-xl": Preset(RELEASED, "paper family, XL (the released width and depth)"),
    "pt-dit-h": Preset(_family(16, 88, 30), "paper family, huge (paper: 1.8B)"),
    "pt-dit-xl-video": Preset(
        RELEASED.replace(compress_ratios=(4, 8, 8), proxy_compress_ratios=(4, 8, 8), frame=16),
        "PT-DiT/XL for video, temporal window 4",
    ),
    "small": Preset(
        _family(6, 64, 6, caption_channels=256, compress_ratios=(1, 4, 4), proxy_compress_ratios=(1, 4, 4)),
        "benchmarks: 6 layers, hidden 384, 512 px windows",
    ),
    "tiny": Preset(
        _family(
            2,
            16,
            2,
            caption_channels=64,
            sample_size=16,
            compress_ratios=(1, 4, 4),
            proxy_compress_ratios=(1, 2, 2),
        ),
        "tests and quick checks: 2 layers, hidden 32, proxy window smaller than the window",
    ),
    "tiny-video": Preset(
        _family(
            2,
            16,
            2,
            caption_channels=64,
            sample_size=16,
            compress_ratios=(2, 2, 2),
            proxy_compress_ratios=(2, 2, 2),
        ),
        "tests: tiny with a temporal window of 2",
    ),
}


TIMESTEP_CHANNELS = 256  # sinusoidal timestep features (model/embeddings.py)


def parameter_count(config: PTDiTConfig) -> int:
    """Trainable parameters of PTDiT(config), counted from the config (the module layout of
    model/ptdit.py, block.py, attention.py and embeddings.py) without building it."""
    c, d = config, config.hidden_size

    def linear(n_in: int, n_out: int, bias: bool = True) -> int:
        return n_in * n_out + (n_out if bias else 0)

    norm = 2 * d if c.norm_elementwise_affine else 0  # LayerNorm weight + bias
    attention = 3 * linear(d, d, c.attention_bias) + linear(d, d)  # to_q/k/v, to_out.0
    inner = 4 * d
    ff = linear(d, 2 * inner if c.activation_fn == "geglu" else inner) + linear(inner, d)
    # proxy self-attention, proxies -> tokens cross-attention + linear_1_visual, window
    # attention, text attention, MLP: 5 norms, 4 attentions, the 6-row modulation table
    block = 5 * norm + 4 * attention + linear(d, d) + ff + 6 * d
    if c.shift_window:  # shift_window_norm, attn3, linear_2, the 3-row proxy table
        block += norm + attention + linear(d, d) + 3 * d
    timestep = linear(TIMESTEP_CHANNELS, d) + linear(d, d)
    if c.use_additional_conditions:  # resolution and aspect-ratio embedders, d // 3 wide each
        timestep += 2 * (linear(TIMESTEP_CHANNELS, d // 3) + linear(d // 3, d // 3))
    total = c.in_channels * d * c.patch_size**2 + d  # patch embedding (Conv2d)
    total += timestep + linear(d, 6 * d)  # adaLN-single
    if c.caption_channels:
        total += linear(c.caption_channels, d) + linear(d, d)
    total += c.num_layers * block
    total += 2 * d + linear(d, c.patch_size**2 * c.out_channels)  # final table, proj_out
    return total


def default_model() -> str:
    """The model commands use when none is named: the shipped trained demo, else `tiny`."""
    return "demo" if (DEMO_DIR / "model.safetensors").is_file() else "tiny"


def load_config(source: str | Path | dict[str, Any] | PTDiTConfig) -> PTDiTConfig:
    """A config from a dict, a JSON path, a folder holding config.json, or a preset name."""
    if isinstance(source, PTDiTConfig):
        return source
    if isinstance(source, dict):
        return PTDiTConfig.from_dict(source)
    text = str(source)
    if text in PRESETS:
        return PRESETS[text].config
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(f"{text!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON config file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); pass a predictor config") from err
    return PTDiTConfig.from_dict(data)
