"""PyTorch reference backend: the project's PTDiT module behind the Engine interface.

Reads DIR/transformer/config.json and the weights beside it (any format
`PTDiT.from_pretrained` reads); without weights, the model source recorded in export.json
(a checkpoint path, or a preset / config with the seed of its random weights) is rebuilt.
This module imports torch and ptdit_export; the rest of the runtime never does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ptdit_runtime.engines.base import Engine, EngineLoadError, TensorSpec

INPUTS = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask")


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, model, device: str = "cpu", dtype: str = "float32"):
        """`model`: a PTDiT module, or a transformer folder (weights or export.json source)."""
        import torch

        self.torch = torch
        torch_dtype = getattr(torch, dtype)
        if isinstance(model, (str, Path)):
            model = _model_from_folder(Path(model), torch_dtype)
        self.model = model.to(device=device, dtype=torch_dtype).eval()
        self.device = device
        cfg = model.config
        text = cfg.caption_channels or cfg.hidden_size
        self.inputs = {
            "hidden_states": TensorSpec(
                "hidden_states", "float32", (None, cfg.in_channels, None, None, None)
            ),
            "timestep": TensorSpec("timestep", "float32", (None,)),
            "encoder_hidden_states": TensorSpec("encoder_hidden_states", "float32", (None, None, text)),
            "encoder_attention_mask": TensorSpec("encoder_attention_mask", "int64", (None, None)),
        }
        self.outputs = {
            "model_output": TensorSpec("model_output", "float32", (None, cfg.out_channels, None, None, None))
        }

    def run(self, feeds: Mapping[str, np.ndarray], constant: Iterable[str] = ()) -> dict[str, np.ndarray]:
        torch = self.torch
        feeds = self.prepare_feeds(feeds)
        args = [torch.from_numpy(feeds[n]).to(self.device) for n in INPUTS]
        with torch.inference_mode():
            out = self.model(*args)
        return {"model_output": out.float().cpu().numpy()}


def _model_from_folder(path: Path, dtype):
    """PTDiT from weights in `path`, else from the source recorded in path/export.json."""
    import json

    from ptdit_export.model import PTDiT

    try:
        return PTDiT.from_pretrained(path, dtype=dtype)
    except ValueError as err:
        export = path / "export.json"
        source = json.loads(export.read_text()).get("source") if export.is_file() else None
        if not source:
            raise FileNotFoundError(
                f"the torch backend needs PTDiT weights in {path} ({err}) or a model source in "
                "export.json; export with weights saved, or use backend='onnxruntime'"
            ) from err
    except (OSError, ImportError, MemoryError):
        raise
    except Exception as err:  # safetensors' SafetensorError, torch's state-dict RuntimeError, ...
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise EngineLoadError(
            f"the weights in {path} cannot be loaded ({reason}); the files are damaged or do not fit "
            "config.json: rebuild the engine folder, or use backend='onnxruntime'"
        ) from None
    from ptdit_export.export.source import model_from_source

    return model_from_source(source, dtype=dtype)
