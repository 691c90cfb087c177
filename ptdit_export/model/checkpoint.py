"""Reading PT-DiT checkpoints: .pt/.pth/.bin, .safetensors, sharded safetensors with an index.

Checkpoints arrive wrapped in many ways ({"model": ...}, {"state_dict": ...}, DDP's
"module." prefixes, MindSpeed's "predictor." prefix); they are unwrapped here and the keys
are checked by name against the model before any weight is copied.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CONTAINER_KEYS = ("state_dict", "model", "module", "ema", "model_state_dict")
KEY_PREFIXES = ("module.", "_orig_mod.", "model.", "predictor.", "transformer.")
# Saved but recomputed from the grid at every forward; safe to drop.
DERIVED_KEYS = ("pos_embed.pos_embed",)
WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
    "model.pt",
    "model.pth",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is; the message says what to change."""


def unwrap_container(obj: object) -> dict[str, torch.Tensor]:
    """Descend through {"model": {...}}-style containers to the tensor dict."""
    for _ in range(4):
        if not isinstance(obj, dict):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(
        "no tensor dictionary found in the checkpoint (looked inside "
        f"{', '.join(CONTAINER_KEYS)}); save the model's state_dict()"
    )


def strip_prefixes(state: dict[str, torch.Tensor], known: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes shared by the keys until they match the model's names."""
    for _ in range(len(KEY_PREFIXES) * 2):
        if any(k in known for k in state):
            break
        prefix = next((p for p in KEY_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def normalise_state_dict(state: dict, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unwrap, strip prefixes, drop derived buffers, and name every mismatch."""
    known = set(model.state_dict())
    state = strip_prefixes(unwrap_container(state), known)
    return {k: v for k, v in state.items() if k not in DERIVED_KEYS}


def check_keys(state: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Raise CheckpointError naming missing, unexpected and mis-shaped parameters."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if not (missing or unexpected or shapes):
        return

    def show(names: list[str]) -> str:
        return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")

    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {show(unexpected)}")
    if shapes:
        parts.append(f"wrong shape {len(shapes)}: {show(shapes)}")
    raise CheckpointError(
        "checkpoint does not match the PT-DiT config: " + "; ".join(parts) + ". Check that "
        "config.json matches the weights (num_layers, num_heads*head_dim, shift_window, "
        "caption_channels, sample_size) or pass strict=False to load what matches."
    )


def shard_paths(index_path: Path) -> list[Path]:
    """The shard files a sharded-safetensors index names, each checked to be a .safetensors file
    inside the index's folder (an index must not reach other files on the machine)."""
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{index_path} is not valid JSON ({err}); re-download it") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(
            f"{index_path} has no 'weight_map' of tensor name -> shard file; re-download the index"
        )
    root = index_path.parent.resolve()
    shards = []
    for shard in sorted(set(weight_map.values())):
        resolved = (root / shard).resolve()
        if not resolved.is_relative_to(root) or not shard.endswith(".safetensors"):
            raise CheckpointError(
                f"{index_path} names shard {shard!r}, which is not a .safetensors file inside {root}; "
                "an index may only name shard files in its own folder"
            )
        if not resolved.is_file():
            raise CheckpointError(f"{index_path} names shard {shard!r}, which is missing; download it")
        shards.append(resolved)
    return shards


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from one file or a sharded safetensors index."""
    name = path.name
    try:
        if name.endswith(".index.json"):
            state: dict[str, torch.Tensor] = {}
            for shard in shard_paths(path):
                state.update(read_weights(shard))
            return state
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:  # truncated files, pickle errors, safetensors header errors
        raise CheckpointError(
            f"cannot read weights from {path}: {type(err).__name__}: {err}. "
            "Is the file complete (re-download it) and a .safetensors, .pt/.pth/.bin or index.json?"
        ) from err
    return unwrap_container(obj)


def find_files(path: Path) -> tuple[Path | None, Path]:
    """(config path or None, weights path) for a folder or a weights file."""
    if path.is_file():
        folder, weights = path.parent, path
    elif path.is_dir():
        folder = path
        weights = next((path / n for n in WEIGHT_NAMES if (path / n).is_file()), None)
        if weights is None:
            found = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pt*"))
            if len(found) != 1:
                raise CheckpointError(f"no weights in {path}: expected one of {', '.join(WEIGHT_NAMES)}")
            weights = found[0]
    else:
        raise CheckpointError(f"{path} does not exist")
    config = next((folder / n for n in ("config.json",) if (folder / n).is_file()), None)
    return config, weights


def model_from_pretrained(cls, path, dtype: torch.dtype | None = None, strict: bool = True):
    """Build `cls` from config.json beside the weights, load, and cast."""
    from ptdit_export.model.presets import load_config

    config_path, weights_path = find_files(Path(path))
    if config_path is None:
        raise CheckpointError(
            f"no config.json beside {weights_path}; write the predictor block of the inference "
            "config there (or the whole inference JSON with a 'predictor' key)"
        )
    cfg = load_config(config_path)
    with torch.device("meta"):
        model = cls(cfg)
    state = normalise_state_dict(read_weights(weights_path), model)
    if strict:
        check_keys(state, model)
    else:
        missing = sorted(set(model.state_dict()) - set(state))
        if missing:
            log.warning("not in checkpoint, left random: %s", ", ".join(missing))
    stored = {v.dtype for v in state.values() if v.is_floating_point()}
    target = dtype or (stored.pop() if len(stored) == 1 else torch.float32)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.02)  # only what strict=False leaves out keeps these
    torch.nn.Module.load_state_dict(model, state, strict=False)
    log.info("loaded %s (%d tensors) as %s", weights_path, len(state), target)
    return model.to(target).eval()
