"""The pipeline folder around the transformer: text encoder + tokenizer, VAE decoder, scheduler.

Each comes from an explicit source (`--text-encoder DIR`, `--vae DIR | space-to-depth:S`) or
from what a preset ships (`Preset.components`); the scheduler config defaults to the release's
rectified-flow sampler.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ptdit_export.export.artifacts import update_model_index, write_json

log = logging.getLogger(__name__)

RELEASED_SCHEDULER = {"kind": "rflow", "num_train_timesteps": 1000, "use_timestep_transform": True}


class ComponentError(ValueError):
    """A --text-encoder / --vae / scheduler source that cannot be used; the message names the fix."""


def space_to_depth_factor(spec: str) -> int | None:
    """S of 'space-to-depth:S' (None for anything else); raises for a malformed S."""
    if not str(spec).startswith("space-to-depth:"):
        return None
    text = str(spec).split(":", 1)[1]
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ComponentError(f"--vae {spec}: S must be a whole number from 1 to 64, e.g. space-to-depth:2")
    return int(text)


def _scheduler_config(source: Any) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    path = Path(source)
    path = path / "scheduler_config.json" if path.is_dir() else path
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ComponentError(
            f"scheduler {source}: {path} does not exist; pass a scheduler_config.json"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ComponentError(f"scheduler {path} is not valid JSON ({err}); fix or replace the file") from None
    if not isinstance(config, dict):
        raise ComponentError(f"scheduler {path} holds a {type(config).__name__}, not a JSON object")
    return config


def resolve_components(model_arg: str, components: dict[str, Any]) -> dict[str, Any]:
    """What the build will write, checked before any heavy work: the preset's shipped
    components overridden by explicit ones, every source present and readable."""
    from ptdit_export.model.presets import PRESETS

    shipped = dict(PRESETS[model_arg].components) if model_arg in PRESETS else {}
    wanted = shipped | {k: v for k, v in components.items() if v is not None}
    encoder = wanted.get("text_encoder")
    if encoder:
        folder = Path(encoder)
        if not (folder / "config.json").is_file():
            raise ComponentError(
                f"--text-encoder {encoder}: no config.json there; pass a Hugging Face T5 encoder folder "
                "(config.json, weights and tokenizer files)"
            )
        if not any((folder / n).is_file() for n in ("tokenizer.json", "spiece.model")):
            raise ComponentError(
                f"--text-encoder {encoder}: no tokenizer.json or spiece.model there; "
                "save the encoder's tokenizer into the same folder"
            )
        tokenizer = folder / "tokenizer.json"
        if tokenizer.is_file():
            try:
                ok = isinstance(json.loads(tokenizer.read_text()), dict)
            except (json.JSONDecodeError, UnicodeDecodeError):
                ok = False
            if not ok:
                raise ComponentError(
                    f"--text-encoder {encoder}: {tokenizer} is not a tokenizer (not a JSON object); "
                    "save the encoder's tokenizer there again"
                )
        try:
            wanted["max_length"] = int(wanted.get("max_length", 200))
        except (TypeError, ValueError):
            raise ComponentError(f"max_length {wanted.get('max_length')!r} is not a whole number") from None
    vae = wanted.get("vae")
    if vae and space_to_depth_factor(vae) is None:
        folder = Path(vae)
        if not ((folder / "config.json").is_file() or (folder / "vae" / "config.json").is_file()):
            raise ComponentError(
                f"--vae {vae}: not a diffusers AutoencoderKL folder (no config.json or vae/config.json); "
                "pass such a folder or space-to-depth:S"
            )
    wanted["scheduler"] = _scheduler_config(wanted.get("scheduler", RELEASED_SCHEDULER))
    return wanted


def write_components(out_dir: Path, model_arg: str, components: dict[str, Any]) -> dict[str, str | None]:
    """Export the requested components into OUT_DIR and record them in model_index.json."""
    wanted = resolve_components(model_arg, components)
    index: dict[str, str | None] = {"text_encoder": None, "tokenizer": None, "vae_decoder": None}

    if wanted.get("text_encoder"):
        from ptdit_export.export.text_encoder import onnx_from_t5

        onnx_from_t5(wanted["text_encoder"], out_dir, max_length=wanted["max_length"])
        index |= {"text_encoder": "text_encoder", "tokenizer": "tokenizer"}
    else:
        log.warning("no text encoder given (--text-encoder DIR): the folder can run the transformer only")

    vae = wanted.get("vae")
    if vae:
        from ptdit_export.export import vae as vae_export

        factor = space_to_depth_factor(vae)
        if factor is not None:
            vae_export.SpaceToDepthVAE(factor).onnx_decoder(out_dir)
        else:
            vae_export.onnx_from_vae(vae, out_dir)
        index["vae_decoder"] = "vae_decoder"
    else:
        log.warning("no VAE given (--vae DIR): generate will stop at latents")

    write_json(out_dir / "scheduler" / "scheduler_config.json", wanted["scheduler"])
    update_model_index(out_dir, scheduler="scheduler", **index)
    return index
