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


def write_components(out_dir: Path, model_arg: str, components: dict[str, Any]) -> dict[str, str | None]:
    """Export the requested components into OUT_DIR and record them in model_index.json."""
    from ptdit_export.model.presets import PRESETS

    shipped = dict(PRESETS[model_arg].components) if model_arg in PRESETS else {}
    wanted = shipped | {k: v for k, v in components.items() if v is not None}
    index: dict[str, str | None] = {"text_encoder": None, "tokenizer": None, "vae_decoder": None}

    if wanted.get("text_encoder"):
        from ptdit_export.export.text_encoder import onnx_from_t5

        onnx_from_t5(wanted["text_encoder"], out_dir, max_length=int(wanted.get("max_length", 200)))
        index |= {"text_encoder": "text_encoder", "tokenizer": "tokenizer"}
    else:
        log.warning("no text encoder given (--text-encoder DIR): the folder can run the transformer only")

    vae = wanted.get("vae")
    if vae:
        from ptdit_export.export import vae as vae_export

        if str(vae).startswith("space-to-depth:"):
            vae_export.SpaceToDepthVAE(int(str(vae).split(":", 1)[1])).onnx_decoder(out_dir)
        else:
            vae_export.onnx_from_vae(vae, out_dir)
        index["vae_decoder"] = "vae_decoder"
    else:
        log.warning("no VAE given (--vae DIR): generate will stop at latents")

    scheduler = wanted.get("scheduler", RELEASED_SCHEDULER)
    if isinstance(scheduler, (str, Path)):  # a folder with scheduler_config.json, or the file itself
        path = Path(scheduler)
        scheduler = json.loads((path / "scheduler_config.json" if path.is_dir() else path).read_text())
    write_json(out_dir / "scheduler" / "scheduler_config.json", scheduler)
    update_model_index(out_dir, scheduler="scheduler", **index)
    return index
