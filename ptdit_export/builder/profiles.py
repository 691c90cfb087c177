"""Optimisation profiles: what shapes an engine accepts, from user-facing sizes.

Users speak in prompts and pixels; engines in graph batch (classifier-free guidance runs the
conditional and unconditional halves as one batch, so twice the prompts) and latent sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptdit_export.export.transformer import Profile

# what a build accepts, per ShapeRange field (pixels for height and width)
BOUNDS = {
    "prompts": (1, 256),
    "height": (1, 16384),
    "width": (1, 16384),
    "frames": (1, 1024),
    "text_len": (1, 4096),
}


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max of prompts, pixels and frames, as the user asks for them."""

    prompts: tuple[int, int, int] = (1, 1, 4)
    height: tuple[int, int, int] | None = None  # pixels; None: the model's native size
    width: tuple[int, int, int] | None = None
    frames: tuple[int, int, int] = (1, 1, 1)  # latent frames
    text_len: tuple[int, int, int] = (1, 200, 512)
    cfg: bool = True  # classifier-free guidance doubles the batch

    def __post_init__(self) -> None:
        for name, (lo, hi) in BOUNDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            option = "--" + name.replace("_", "-")
            if len(value) != 3 or not all(isinstance(v, int) for v in value):
                raise ValueError(f"{option} {value!r}: give one whole number or min,opt,max")
            if not lo <= value[0] <= value[1] <= value[2] <= hi:
                raise ValueError(
                    f"{option} {','.join(map(str, value))}: needs {lo} <= min <= opt <= max <= {hi}"
                )

    def graph_profiles(self, config, vae_scale: int) -> dict[str, Profile]:
        step = config.patch_size * vae_scale
        native = config.sample_size * vae_scale

        def latent(px: tuple[int, int, int] | None, axis: int) -> Profile:
            px = px or (native, native, native)
            unit = step * config.compress_ratios[axis]
            for v in px:
                if v % unit:
                    raise ValueError(
                        f"{v} px is not a multiple of VAE scale * patch * window = {unit}: "
                        f"use {v // unit * unit or unit} or {(v // unit + 1) * unit}"
                    )
            return Profile(*(v // vae_scale for v in px))

        k = 2 if self.cfg else 1
        return {
            "batch": Profile(*(k * p for p in self.prompts)),
            "latent_height": latent(self.height, 1),
            "latent_width": latent(self.width, 2),
            "frames": Profile(*self.frames),
            "text_len": Profile(*self.text_len),
        }


def input_shapes(config, profiles: dict[str, Profile]) -> dict[str, tuple[tuple, tuple, tuple]]:
    """TensorRT min/opt/max shapes for each transformer input."""
    text_width = config.caption_channels or config.hidden_size
    out = {}
    for which in ("min", "opt", "max"):
        b, f, h, w, n = (
            getattr(profiles[k], which)
            for k in ("batch", "frames", "latent_height", "latent_width", "text_len")
        )
        shapes = {
            "hidden_states": (b, config.in_channels, f, h, w),
            "timestep": (b,),
            "encoder_hidden_states": (b, n, text_width),
            "encoder_attention_mask": (b, n),
        }
        for name, shape in shapes.items():
            out.setdefault(name, []).append(shape)
    return {k: tuple(v) for k, v in out.items()}
