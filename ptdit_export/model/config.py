"""PTDiTConfig: the network's shape, read from the official predictor block or a preset.

The field names are those of the official inference config (`predictor` block of the
Qihoo-T2X JSON), so a user's file loads as it is. Fields that do not change the network
(dropout, training switches, ...) are accepted and ignored; values this implementation
cannot honour are rejected with a message naming the field.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ACTIVATIONS = ("gelu", "gelu-approximate", "geglu", "geglu-approximate")

# Official fields that have no effect on inference numerics: accepted, ignored.
IGNORED_FIELDS = frozenset(
    {
        "dropout",
        "norm_num_groups",
        "num_embeds_ada_norm",
        "upcast_attention",  # only used by a non-SDPA processor; no effect on fp32 maths
        "model_id",
        "from_pretrained",
        "dtype",
        "use_linear_projection",
        "only_cross_attention",
        "double_self_attention",
        "final_dropout",
        "_class_name",
        "_diffusers_version",
    }
)


@dataclass(frozen=True)
class PTDiTConfig:
    """Shape of a PT-DiT denoiser. Defaults are the released Qihoo-T2X 1.1B model."""

    num_heads: int = 16  # attention heads in every attention
    head_dim: int = 72  # channels per head; hidden = num_heads * head_dim
    in_channels: int = 4  # latent channels in
    out_channels: int = 8  # channels out (velocity + learned-sigma half in the release)
    num_layers: int = 28  # transformer blocks
    cross_attention_dim: int = 1152  # must equal hidden: keys come from the projected caption
    attention_bias: bool = True  # bias on to_q / to_k / to_v
    sample_size: int = 32  # training latent size; sets the position-embedding interpolation scale
    frame: int = 1  # training frame count (only feeds the saved pos_embed buffer)
    patch_size: int = 2  # spatial patch; time is never patched
    activation_fn: str = "gelu-approximate"  # feed-forward activation
    norm_type: str = "ada_norm_single"  # only adaLN-single exists in the release
    norm_elementwise_affine: bool = False  # LayerNorm weights in the blocks
    norm_eps: float = 1e-6  # LayerNorm epsilon in the blocks
    caption_channels: int | None = 4096  # text feature width (T5 v1.1 XXL); None: no projection
    compress_ratios: tuple[int, int, int] = (1, 8, 8)  # attention window (frames, rows, cols)
    proxy_compress_ratios: tuple[int, int, int] = (1, 8, 8)  # proxy window
    shift_window: bool = True  # shifted-window branch (attn3, linear_2)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # unknown fields, kept

    # ----------------------------------------------------------------- derived
    @property
    def hidden_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def window(self) -> tuple[int, int, int]:
        return tuple(self.compress_ratios)

    @property
    def proxy_groups(self) -> tuple[int, int, int]:
        """Proxies per window along (f, h, w); time always pools the whole window (official)."""
        _, wh, ww = self.compress_ratios
        _, ph, pw = self.proxy_compress_ratios
        return (1, wh // ph, ww // pw)

    @property
    def use_additional_conditions(self) -> bool:
        """PixArt resolution/aspect-ratio embedders exist exactly when sample_size == 128."""
        return self.sample_size == 128

    @property
    def interpolation_scale(self) -> int:
        return max(self.sample_size // 64, 1)

    # ---------------------------------------------------------- construction
    def __post_init__(self) -> None:
        object.__setattr__(self, "compress_ratios", tuple(int(v) for v in self.compress_ratios))
        object.__setattr__(self, "proxy_compress_ratios", tuple(int(v) for v in self.proxy_compress_ratios))
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"PTDiT config field {name!r}: {why}")

        for name in ("num_heads", "head_dim", "in_channels", "out_channels", "num_layers"):
            if int(getattr(self, name)) <= 0:
                raise bad(name, "must be a positive integer")
        if self.norm_type != "ada_norm_single":
            raise bad("norm_type", f"{self.norm_type!r} is not supported; PT-DiT uses 'ada_norm_single'")
        if self.activation_fn not in ACTIVATIONS:
            raise bad("activation_fn", f"{self.activation_fn!r} is not one of {ACTIVATIONS}")
        if self.cross_attention_dim != self.hidden_size:
            raise bad(
                "cross_attention_dim",
                f"{self.cross_attention_dim} must equal num_heads*head_dim = {self.hidden_size}: "
                "the proxy cross-attention and text attention take keys of the hidden width",
            )
        d = self.hidden_size
        if d % 16:
            raise bad(
                "num_heads*head_dim",
                f"hidden size {d} must be a multiple of 16 for the 3-D sin-cos position embedding",
            )
        if len(self.compress_ratios) != 3 or len(self.proxy_compress_ratios) != 3:
            raise bad("compress_ratios", "window sizes are three integers (frames, rows, cols)")
        if min(self.compress_ratios) < 1 or min(self.proxy_compress_ratios) < 1:
            raise bad("compress_ratios", "window sizes must be >= 1")
        for axis, (w, p) in enumerate(zip(self.compress_ratios[1:], self.proxy_compress_ratios[1:])):
            if p > w or w % (w // p):
                raise bad(
                    "proxy_compress_ratios",
                    f"proxy window {p} on axis {axis + 1} must be <= the attention window {w} "
                    f"and the window must split into {w}//{p} strided groups",
                )
        if self.patch_size < 1:
            raise bad("patch_size", "must be >= 1")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> PTDiTConfig:
        """Build from an official `predictor` block (or a whole inference config holding one)."""
        if "predictor" in cfg and isinstance(cfg["predictor"], dict):
            cfg = cfg["predictor"]
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in cfg.items():
            if key in names:
                kwargs[key] = value
            elif key in IGNORED_FIELDS:
                continue
            elif key == "attention_type" and value != "default":
                raise ValueError(f"PTDiT config field 'attention_type': {value!r} is not supported")
            elif key == "extra":
                continue
            else:
                extra[key] = value
        for key in ("compress_ratios", "proxy_compress_ratios"):
            if key in kwargs and kwargs[key] is None:
                # the official constructor's defaults when the field is null
                kwargs[key] = (1, 8, 8) if key == "compress_ratios" else (1, 4, 4)
        if kwargs.get("frame") is None:
            kwargs.pop("frame", None)
        if kwargs.get("out_channels") is None and "in_channels" in kwargs:
            kwargs["out_channels"] = kwargs["in_channels"]
        if kwargs.get("cross_attention_dim") is None and "num_heads" in kwargs:
            kwargs["cross_attention_dim"] = kwargs["num_heads"] * kwargs.get("head_dim", 72)
        if extra:
            log.debug("PTDiT config: ignoring unknown fields %s", sorted(extra))
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("extra")
        out["compress_ratios"] = list(self.compress_ratios)
        out["proxy_compress_ratios"] = list(self.proxy_compress_ratios)
        return out

    def replace(self, **changes: Any) -> PTDiTConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ geometry
    def check_latent(self, channels: int, frames: int, height: int, width: int) -> None:
        """Raise a message that names the valid sizes when a latent does not fit the windows."""
        if channels != self.in_channels:
            raise ValueError(
                f"hidden_states has {channels} channels; this model takes in_channels={self.in_channels}"
            )
        p = self.patch_size
        wf, wh, ww = self.compress_ratios
        problems = []
        if frames % wf:
            problems.append(f"frames={frames} is not a multiple of the temporal window {wf}")
        for name, size, win in (("height", height, wh), ("width", width, ww)):
            if size % (p * win):
                lo = (size // (p * win)) * p * win
                problems.append(
                    f"latent {name}={size} is not a multiple of patch*window = {p}*{win} = {p * win}"
                    f" (nearest valid: {lo or p * win} or {lo + p * win})"
                )
        if problems:
            raise ValueError("latent grid does not fit the attention windows: " + "; ".join(problems))


def window_schedule(resolution: int, frames: int = 1) -> tuple[int, int, int]:
    """The paper's attention window per image resolution (pixels, square).

    (1,2,2) at 256 px and doubling per octave up to (1,16,16) at 2048 px; video uses 4 frames
    per temporal window. Intermediate sizes take the window of the nearest power-of-two octave
    at or below.
    """
    if resolution < 256:
        raise ValueError(f"resolution {resolution} px is below the schedule's 256 px")
    octave = min(int(math.log2(resolution / 256)), 3)
    side = 2 << octave  # 2, 4, 8, 16
    return (4 if frames > 1 else 1, side, side)
