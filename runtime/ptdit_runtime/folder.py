"""The engine folder: which components exist, their configs, and the transformer's size limits.

Reading a folder touches only JSON files, so every request can be checked against it before
any session is created or any engine runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptdit_runtime.configs import SchedulerConfig, TextEncoderConfig, VaeDecoderConfig, read_json

log = logging.getLogger(__name__)

COMPONENTS = ("transformer", "text_encoder", "tokenizer", "vae_decoder", "scheduler")


@dataclass(frozen=True)
class Range:
    min: int
    opt: int
    max: int

    def __contains__(self, value: int) -> bool:
        return self.min <= value <= self.max

    def __str__(self) -> str:
        return str(self.min) if self.min == self.max else f"{self.min}..{self.max}"


def _range(value: Any) -> Range | None:
    """A profile entry: [min, opt, max], {"min","opt","max"}, or one int (static)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return Range(int(value), int(value), int(value))
    if isinstance(value, dict):
        lo, hi = int(value["min"]), int(value["max"])
        return Range(lo, int(value.get("opt", lo)), hi)
    lo, opt, hi = (int(v) for v in value)
    return Range(lo, opt, hi)


@dataclass(frozen=True)
class Limits:
    """What the transformer engine accepts, in latent units (None: unlimited by the folder)."""

    batch: Range | None = None
    height: Range | None = None  # latent rows
    width: Range | None = None  # latent columns
    frames: Range | None = None  # latent frames
    text_length: Range | None = None

    @classmethod
    def from_export(cls, settings: dict[str, Any]) -> Limits:
        """From transformer/export.json: its "profiles" entry (latent units), as
        `ptdit_export.export.transformer.ExportSettings.to_dict` writes it."""
        profiles = settings.get("profiles") or {}
        return cls(
            batch=_range(profiles.get("batch")),
            height=_range(profiles.get("latent_height")),
            width=_range(profiles.get("latent_width")),
            frames=_range(profiles.get("frames")),
            text_length=_range(profiles.get("text_len")),
        )


class MissingComponent(FileNotFoundError):
    """A component the request needs is not in the engine folder."""


class EngineFolder:
    """An Optimum-style folder written by `ptdit-export export/build` (see docs/runtime.md)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingComponent(
                f"engine folder {self.root} does not exist; build one with `ptdit-export build`"
            )
        index_path = self.root / "model_index.json"
        self.index: dict[str, Any] = read_json(index_path) if index_path.is_file() else {}
        if not self.index:
            log.warning("%s has no model_index.json; finding components by folder name", self.root)
        self.transformer_dir = self._component("transformer")
        if self.transformer_dir is None:
            raise MissingComponent(
                f"{self.root} has no transformer component (transformer/model.onnx or engine.plan); "
                "run `ptdit-export export --out DIR` first"
            )
        self.transformer_config: dict[str, Any] = read_json(self.transformer_dir / "config.json")
        export_path = self.transformer_dir / "export.json"
        self.export_settings: dict[str, Any] = read_json(export_path) if export_path.is_file() else {}
        self.text_encoder_dir = self._component("text_encoder")
        self.tokenizer_dir = self._component("tokenizer")
        self.vae_dir = self._component("vae_decoder")
        scheduler_dir = self._component("scheduler")
        self.scheduler = SchedulerConfig.from_dict(
            read_json(scheduler_dir / "scheduler_config.json") if scheduler_dir else {}
        )
        self.text_config = (
            TextEncoderConfig.from_dict(read_json(self.text_encoder_dir / "config.json"))
            if self.text_encoder_dir
            else None
        )
        self.vae_config = (
            VaeDecoderConfig.from_dict(read_json(self.vae_dir / "config.json")) if self.vae_dir else None
        )
        if self.text_encoder_dir and not self.tokenizer_dir:
            raise MissingComponent(f"{self.root} has a text encoder but no tokenizer/ folder; re-export it")
        self.limits = Limits.from_export(self.export_settings)

    def _component(self, name: str) -> Path | None:
        if name in self.index and self.index[name] is None:
            return None  # explicitly absent
        sub = self.index.get(name, name)
        if isinstance(sub, list):  # diffusers-style ["library", "class"]
            sub = name
        path = self.root / str(sub)
        return path if path.is_dir() else None

    # ------------------------------------------------------------ geometry
    @property
    def spatial_compression(self) -> int:
        """Pixels per latent along H and W (8 without a VAE, as for the released VAE)."""
        return self.vae_config.spatial_compression if self.vae_config else 8

    def latent_frames(self, frames: int) -> int:
        return self.vae_config.latent_frames(frames) if self.vae_config else frames

    @property
    def latent_channels(self) -> int:
        return int(self.transformer_config["in_channels"])

    @property
    def out_channels(self) -> int:
        return int(self.transformer_config.get("out_channels") or self.latent_channels)

    @property
    def caption_channels(self) -> int:
        cfg = self.transformer_config
        return int(cfg.get("caption_channels") or cfg["num_heads"] * cfg["head_dim"])

    @property
    def latent_multiple(self) -> tuple[int, int, int]:
        """Latent (frames, rows, cols) must be multiples of these: window x patch."""
        cfg = self.transformer_config
        wf, wh, ww = cfg.get("compress_ratios", (1, 8, 8))
        p = int(cfg.get("patch_size", 2))
        return int(wf), p * int(wh), p * int(ww)

    def default_size(self) -> tuple[int, int, int]:
        """(height, width, frames) in pixels: the profile's optimum, else 512 px and one frame
        (the smallest temporal window for video models)."""
        s, lim = self.spatial_compression, self.limits
        wf, mh, mw = self.latent_multiple
        height = lim.height.opt * s if lim.height else -(-512 // (mh * s)) * mh * s
        width = lim.width.opt * s if lim.width else -(-512 // (mw * s)) * mw * s
        t = self.vae_config.temporal_compression if self.vae_config else 1
        frames = 1 if wf == 1 else (lim.frames.opt if lim.frames else wf) * t
        return height, width, frames

    def missing(self) -> list[str]:
        return [
            n
            for n, d in (("text_encoder", self.text_encoder_dir), ("vae_decoder", self.vae_dir))
            if d is None
        ]
