"""PyTorch backend: the project's PTDiT module behind the Engine interface, on CPU or CUDA.

Reads DIR/transformer/config.json and the weights beside it (any format
`PTDiT.from_pretrained` reads); without weights, the model source recorded in export.json
(a checkpoint path, or a preset / config with the seed of its random weights) is rebuilt.
`torch.json` beside them (written by `ptdit-export build --backend torch`) holds the default
`TorchSettings`; arguments override it.

On CUDA the engine is built for speed: fp16/bf16 weights, the fused kernels behind the model's
attention seam (see engines/torch_cuda.py; SDPA when the library is absent, said once), CUDA
graphs of one denoiser step per input shape, torch.compile on request. Inputs named in
`constant` (the text embeddings during a loop) stay on the device while the caller passes the
same array object. This module imports torch and ptdit_export; the rest of the runtime never does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptdit_runtime.engines.base import Engine, EngineLoadError, TensorSpec

log = logging.getLogger(__name__)

INPUTS = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask")
SETTINGS_FILE = "torch.json"
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class TorchSettings:
    """How the torch engine runs a transformer folder; saved as transformer/torch.json."""

    # float32; float16 (projections, attention, MLP in fp16; norms, modulation and the residual
    # stream in fp32, as the fp16 ONNX graphs); bfloat16 (everything bf16, as the release runs)
    dtype: str = "float32"
    attention: str = "auto"  # auto (fused on CUDA when the kernels load, else sdpa) | fused | sdpa | math
    cuda_graph: bool = False  # replay one captured step per input shape (CUDA only)
    compile: bool = False  # torch.compile the model (default mode)
    kernels_library: str | None = None  # None: the copy beside the weights, else the default search

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")

    @classmethod
    def read(cls, folder: Path) -> TorchSettings:
        path = folder / SETTINGS_FILE
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
        return cls(**data)


class TorchEngine(Engine):
    backend = "torch"

    def __init__(
        self,
        model,
        device: str = "cpu",
        dtype: str | None = None,
        attention: str | None = None,
        cuda_graph: bool | None = None,
        compile: bool | None = None,
    ):
        """`model`: a PTDiT module, or a transformer folder (weights or export.json source).
        None options take the folder's torch.json, else the `TorchSettings` defaults."""
        import torch

        from ptdit_runtime.engines.torch_cuda import StepGraphs, find_kernels_library, resolve_attention

        self.torch = torch
        folder = Path(model) if isinstance(model, (str, Path)) else None
        given = {"dtype": dtype, "attention": attention, "cuda_graph": cuda_graph, "compile": compile}
        base = TorchSettings.read(folder) if folder else TorchSettings()
        self.settings = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: torch.cuda.is_available() is False; run on a CUDA machine "
                "or pass device='cpu'"
            )

        # 1. model in the engine's precision, on the device
        if folder is not None:
            model = _model_from_folder(folder)
        self.model = model_in_precision(model, self.settings.dtype).to(self.device).eval()
        self.config = cfg = self.model.config

        # 2. attention backend, then the step function (compiled, graphed)
        library = find_kernels_library(folder, self.settings.kernels_library)
        self.attention = resolve_attention(self.settings.attention, self.device, library)
        step = self.model
        if self.settings.compile:
            step = torch.compile(step)
        if self.settings.cuda_graph and self.device.type == "cuda":
            step = StepGraphs(step)
        elif self.settings.cuda_graph:
            log.info("cuda_graph ignored on %s", self.device)
        self._step = step
        self._uploaded: dict[str, tuple] = {}  # name -> (caller's array, device tensor)
        log.info(
            "torch engine: %s on %s, attention %s, CUDA graphs %s, compile %s",
            self.settings.dtype, self.device, self.attention,
            isinstance(step, StepGraphs), self.settings.compile,
        )  # fmt: skip

        self.inputs, self.outputs = transformer_specs(cfg)

    def upload(self, feeds: Mapping[str, np.ndarray], constant: Iterable[str] = ()) -> list:
        """The inputs as device tensors, in INPUTS order; constant ones are reused when unchanged."""
        torch, constant = self.torch, set(constant)
        prepared = self.prepare_feeds(feeds)
        args = []
        for name in INPUTS:
            cached = self._uploaded.get(name)
            if name in constant and cached is not None and cached[0] is feeds[name]:
                args.append(cached[1])
                continue
            tensor = torch.from_numpy(prepared[name]).to(self.device)
            self._uploaded[name] = (feeds[name], tensor)
            args.append(tensor)
        return args

    def forward(self, *args):
        """One step on device tensors (INPUTS order) -> the model output on the device."""
        from ptdit_export.model.attention import use_backend

        with self.torch.inference_mode(), use_backend(self.attention):
            return self._step(*args)

    def run(self, feeds: Mapping[str, np.ndarray], constant: Iterable[str] = ()) -> dict[str, np.ndarray]:
        out = self.forward(*self.upload(feeds, constant))
        return {"model_output": out.float().cpu().numpy()}

    def close(self) -> None:
        if hasattr(self._step, "clear"):
            self._step.clear()
        self._uploaded.clear()


def model_in_precision(model, dtype: str):
    """float16: the fp16 ONNX graphs' layout (fp32 norms, modulation, residual stream), built by
    the exporter's `graph_model`; float32 / bfloat16: every tensor in that dtype."""
    import torch

    if dtype == "float16":
        from ptdit_export.export.transformer import graph_model

        return graph_model(model.float(), "fp16")
    return model.to(getattr(torch, dtype))


def _model_from_folder(path: Path):
    """PTDiT from weights in `path`, else from the source recorded in path/export.json."""
    from ptdit_export.model import PTDiT

    try:
        return PTDiT.from_pretrained(path)
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

    return model_from_source(source)


def transformer_specs(cfg) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """The denoiser's inputs and output as the ONNX export names them, for a PTDiT config."""
    text = cfg.caption_channels or cfg.hidden_size
    inputs = {
        "hidden_states": TensorSpec("hidden_states", "float32", (None, cfg.in_channels, None, None, None)),
        "timestep": TensorSpec("timestep", "float32", (None,)),
        "encoder_hidden_states": TensorSpec("encoder_hidden_states", "float32", (None, None, text)),
        "encoder_attention_mask": TensorSpec("encoder_attention_mask", "int64", (None, None)),
    }
    outputs = {
        "model_output": TensorSpec("model_output", "float32", (None, cfg.out_channels, None, None, None))
    }
    return inputs, outputs
