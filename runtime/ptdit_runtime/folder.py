"""The engine folder: which components exist, their configs, and the transformer's size limits.

Reading a folder touches only JSON files (and the sizes of the files its manifest lists), so
every request can be checked against it before any session is created or any engine runs.
A folder is refused when it has no root manifest.json, a listed file is missing or has
another size (`verify="size"`, the default), or, with `verify="full"`, another sha256.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptdit_runtime.configs import (
    ConfigError,
    MissingFile,
    SchedulerConfig,
    TextEncoderConfig,
    VaeDecoderConfig,
    read_json,
)
from ptdit_runtime.manifest import FolderError, check_folder

log = logging.getLogger(__name__)

COMPONENTS = ("transformer", "text_encoder", "tokenizer", "vae_decoder", "scheduler")
VERIFY = ("size", "full", "none")
ENGINE_FILES = ("model.onnx", "engine.plan", "model.om")  # an exported transformer has one


@dataclass(frozen=True)
class Range:
    min: int
    opt: int
    max: int

    def __contains__(self, value: int) -> bool:
        return self.min <= value <= self.max

    def __str__(self) -> str:
        return str(self.min) if self.min == self.max else f"{self.min}..{self.max}"


def _range(value: Any, name: str = "profile") -> Range | None:
    """A profile entry: [min, opt, max], {"min","opt","max"}, or one int (static)."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, (int, float)):
            lo = opt = hi = int(value)
        elif isinstance(value, dict):
            lo, hi = int(value["min"]), int(value["max"])
            opt = int(value.get("opt", lo))
        else:
            lo, opt, hi = (int(v) for v in value)
    except (TypeError, ValueError, KeyError, OverflowError):
        raise ConfigError(
            f"transformer/export.json profile {name!r}: {value!r} is not [min, opt, max] integers; "
            "re-export the transformer"
        ) from None
    if not 1 <= lo <= opt <= hi:
        raise ConfigError(
            f"transformer/export.json profile {name!r}: {value!r} needs 1 <= min <= opt <= max; "
            "re-export the transformer"
        )
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
        if not isinstance(profiles, dict):
            raise ConfigError("transformer/export.json field 'profiles' is not an object; re-export it")
        return cls(
            batch=_range(profiles.get("batch"), "batch"),
            height=_range(profiles.get("latent_height"), "latent_height"),
            width=_range(profiles.get("latent_width"), "latent_width"),
            frames=_range(profiles.get("frames"), "frames"),
            text_length=_range(profiles.get("text_len"), "text_len"),
        )


class MissingComponent(FileNotFoundError):
    """A component the request needs is not in the engine folder."""


class OutsideFolder(FolderError):
    """model_index.json points a component outside the engine folder."""


def _positive_int(cfg: dict[str, Any], name: str, path: Path) -> int:
    value = cfg.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(
            f"{path} field {name!r}: {value!r} is not a positive integer; re-export the transformer"
        )
    return value


def _check_transformer_config(cfg: dict[str, Any], path: Path) -> None:
    """The fields the runtime reads (channels, patch, windows) exist and are positive integers."""
    _positive_int(cfg, "in_channels", path)
    for name in ("out_channels", "caption_channels", "patch_size"):
        if cfg.get(name) is not None:
            _positive_int(cfg, name, path)
    if cfg.get("caption_channels") is None:
        _positive_int(cfg, "num_heads", path)
        _positive_int(cfg, "head_dim", path)
    ratios = cfg.get("compress_ratios", (1, 8, 8))
    if (
        not isinstance(ratios, (list, tuple))
        or len(ratios) != 3
        or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ratios)
    ):
        raise ConfigError(
            f"{path} field 'compress_ratios': {ratios!r} is not three positive integers; re-export the transformer"
        )


class EngineFolder:
    """An Optimum-style folder written by `ptdit-export build` (see docs/runtime.md).

    verify: "size" checks that every file the root manifest.json lists is there with its size
    (fast: no file is read); "full" also compares every sha256 (reads every byte); "none"
    skips the manifest (for folders assembled by hand or by `ptdit-export export` alone).
    """

    def __init__(self, root: str | Path, verify: str = "size"):
        self.root = Path(root)
        if verify not in VERIFY:
            raise ValueError(f"verify={verify!r} is not one of {VERIFY}")
        if not self.root.is_dir():
            raise MissingComponent(
                f"engine folder {self.root} does not exist; build one with `ptdit-export build`"
            )
        self.manifest: dict[str, Any] = {} if verify == "none" else check_folder(self.root, verify == "full")
        index_path = self.root / "model_index.json"
        self.index: dict[str, Any] = read_json(index_path) if index_path.is_file() else {}
        if not self.index:
            log.warning("%s has no model_index.json; finding components by folder name", self.root)
        self.transformer_dir = self._component("transformer")
        if self.transformer_dir is None:
            raise MissingComponent(
                f"{self.root} has no transformer component (transformer/model.onnx or engine.plan); "
                f"build one with `ptdit-export build --out {self.root}`"
            )
        config_path = self.transformer_dir / "config.json"
        self.transformer_config: dict[str, Any] = read_json(config_path)
        _check_transformer_config(self.transformer_config, config_path)
        export_path = self.transformer_dir / "export.json"
        self.export_settings: dict[str, Any] = {}
        if export_path.is_file():
            self.export_settings = read_json(export_path)
        elif any((self.transformer_dir / name).is_file() for name in ENGINE_FILES):
            raise MissingFile(
                f"{export_path} is missing: without it the engine's sizes are unknown; "
                f"rebuild the folder with `ptdit-export build --out {self.root} --force`"
            )
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
        if not isinstance(sub, str) or not sub:
            raise ConfigError(
                f"{self.root / 'model_index.json'} field {name!r}: {sub!r} is not a folder name; "
                "rebuild the folder"
            )
        path = self.root / sub
        root = self.root.resolve()
        if not path.resolve().is_relative_to(root) or path.resolve() == root:
            raise OutsideFolder(
                f"{self.root / 'model_index.json'} points {name} at {sub!r}, outside the engine folder "
                f"{self.root}; components must be sub-folders of it (rebuild the folder)"
            )
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
        (the smallest temporal window for video models). `check_request` does not use the 512 px
        fallback: a folder without export.json (torch weights only) needs explicit sizes."""
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
