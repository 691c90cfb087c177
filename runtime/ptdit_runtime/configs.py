"""The JSON files of an engine folder, as frozen dataclasses (one per component).

These are the contract between the exporters (`ptdit_export.export.*`, which write them) and
this runtime (which reads them). Unknown keys are ignored with a debug message so a newer
exporter's folder still loads; known keys with bad values are rejected naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEDULER_KINDS = ("rflow", "ddim", "dpmpp2m")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("flow", "v_prediction", "epsilon")
# diffusers scheduler class names a user's scheduler_config.json may carry instead of "kind"
DIFFUSERS_CLASSES = {
    "DDIMScheduler": "ddim",
    "DPMSolverMultistepScheduler": "dpmpp2m",
    "FlowMatchEulerDiscreteScheduler": "rflow",
}


class ConfigError(ValueError):
    """A JSON file of the engine folder is unreadable or has a field with a bad value."""


class MissingFile(FileNotFoundError):
    """A file the engine folder needs is not there."""


def _check_type(name: str, value: Any, default: Any, what: str) -> None:
    """A field must have its default's type (ints for ints, numbers for floats, ...)."""
    if default is None:  # optional fields (str | None) are checked by __post_init__
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"{what} field {name!r}: {value!r} is not a {type(default).__name__}"
            + (" (finite)" if isinstance(default, float) else "")
            + "; re-run the export that writes it"
        )


def _from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in data if k not in fields and not k.startswith("_"))
    if unknown:
        log.debug("%s: ignoring unknown fields %s", what, unknown)
    for k, v in data.items():
        if k in fields and fields[k].default is not dataclasses.MISSING:
            _check_type(k, v, fields[k].default, what)
    return cls(**{k: v for k, v in data.items() if k in fields})


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object (not a list, number or string) from PATH; errors name the file and the fix."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFile(f"{path} is missing; re-run the export that writes it") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a JSON file; re-run the export that writes it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); re-run the export that writes it") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} holds a JSON {type(data).__name__}, not an object; re-run the export that writes it"
        )
    return data


def write_json(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


@dataclass(frozen=True)
class SchedulerConfig:
    """DIR/scheduler/scheduler_config.json. Defaults: the released model's rectified flow."""

    kind: str = "rflow"  # "rflow" | "ddim" | "dpmpp2m"
    num_train_timesteps: int = 1000  # t runs over [0, num_train_timesteps]
    prediction_type: str = "flow"  # rflow: "flow"; ddim/dpmpp2m: "v_prediction" or "epsilon"
    # rectified flow (the release's RFlow sampler)
    use_timestep_transform: bool = True  # resolution-dependent shift of the timesteps
    use_discrete_timesteps: bool = False  # round t_i before the transform
    transform_scale: float = 1.0  # extra factor on the shift ratio
    base_pixels: int = 512 * 512  # the resolution whose shift ratio is 1
    # DDPM-family (DDIM, DPM-Solver++): a discrete beta schedule
    beta_schedule: str = "scaled_linear"  # "linear" | "scaled_linear" | "squaredcos_cap_v2"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    timestep_spacing: str | None = None  # None: "leading" for ddim, "linspace" for dpmpp2m
    steps_offset: int = 0  # added to "leading" timesteps
    set_alpha_to_one: bool = True  # ddim: the final step lands on alpha_bar = 1 (else alpha_bar[0])

    def __post_init__(self) -> None:
        def bad(name: str, allowed: tuple[str, ...]) -> ValueError:
            value = getattr(self, name)
            return ConfigError(f"scheduler config field {name!r}: {value!r} is not one of {allowed}")

        if self.kind not in SCHEDULER_KINDS:
            raise bad("kind", SCHEDULER_KINDS)
        if self.beta_schedule not in BETA_SCHEDULES:
            raise bad("beta_schedule", BETA_SCHEDULES)
        if self.timestep_spacing is not None and self.timestep_spacing not in SPACINGS:
            raise bad("timestep_spacing", SPACINGS)
        if self.prediction_type not in PREDICTION_TYPES:
            raise bad("prediction_type", PREDICTION_TYPES)
        if (self.kind == "rflow") != (self.prediction_type == "flow"):
            raise ConfigError(
                f"scheduler config: kind {self.kind!r} does not go with prediction_type "
                f"{self.prediction_type!r}; rflow takes 'flow', ddim/dpmpp2m take 'v_prediction' or 'epsilon'"
            )
        if self.num_train_timesteps < 1:
            raise ConfigError("scheduler config field 'num_train_timesteps' must be >= 1")
        if self.base_pixels < 1 or self.transform_scale <= 0:
            raise ConfigError("scheduler config fields 'base_pixels' and 'transform_scale' must be > 0")

    @property
    def spacing(self) -> str:
        if self.timestep_spacing is not None:
            return self.timestep_spacing
        return "leading" if self.kind == "ddim" else "linspace"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SchedulerConfig:
        data = dict(data)
        if "kind" not in data and data.get("_class_name") in DIFFUSERS_CLASSES:
            data["kind"] = DIFFUSERS_CLASSES[data["_class_name"]]
        kind = data.get("kind", "rflow")
        data.setdefault("prediction_type", "flow" if kind == "rflow" else "v_prediction")
        return _from_dict(cls, data, "scheduler_config.json")


@dataclass(frozen=True)
class TextEncoderConfig:
    """DIR/text_encoder/config.json, written by `onnx_from_t5`."""

    max_length: int = 200  # tokens per prompt (padded and truncated to this)
    hidden_size: int = 4096  # width of last_hidden_state (T5 v1.1 XXL: 4096)
    model_type: str = "t5"
    source: str = ""  # the Hugging Face folder it was exported from
    opset: int = 18

    def __post_init__(self) -> None:
        if self.max_length < 1 or self.hidden_size < 1:
            raise ConfigError("text_encoder config fields 'max_length' and 'hidden_size' must be >= 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextEncoderConfig:
        return _from_dict(cls, data, "text_encoder/config.json")


VAE_KINDS = ("autoencoder_kl", "space_to_depth")


@dataclass(frozen=True)
class VaeDecoderConfig:
    """DIR/vae_decoder/config.json.

    The decoder graph takes latents in the VAE's own space; the runtime un-scales the
    denoiser's latents first: z_vae = z / scaling_factor + shift_factor. Its output is
    images [B, 3, F, H, W] float32 in [0, 1].
    """

    kind: str = "autoencoder_kl"  # "autoencoder_kl" | "space_to_depth"
    latent_channels: int = 4
    scaling_factor: float = 0.18215
    shift_factor: float = 0.0
    spatial_compression: int = 8  # pixels per latent along H and W
    temporal_compression: int = 1  # frames per latent frame (1 for image VAEs)
    opset: int = 18

    def __post_init__(self) -> None:
        if self.kind not in VAE_KINDS:
            raise ConfigError(f"vae_decoder config field 'kind': {self.kind!r} is not one of {VAE_KINDS}")
        if self.scaling_factor == 0:
            raise ConfigError("vae_decoder config field 'scaling_factor' must not be 0")
        for name in ("latent_channels", "spatial_compression", "temporal_compression"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"vae_decoder config field {name!r} must be >= 1; got {getattr(self, name)}; "
                    "re-export the VAE decoder"
                )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VaeDecoderConfig:
        data = dict(data)
        if data.get("shift_factor") is None:
            data["shift_factor"] = 0.0
        return _from_dict(cls, data, "vae_decoder/config.json")

    def latent_frames(self, frames: int) -> int:
        """Latent frames for `frames` pixel frames (causal VAEs keep the first frame alone)."""
        c = self.temporal_compression
        if c == 1:
            return frames
        if frames % 2 == 1:
            return -(-(frames - 1) // c) + 1
        return -(-frames // c)
