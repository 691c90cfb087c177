"""`build --backend torch`: a pipeline folder the runtime's torch engine runs, no ONNX needed.

transformer/ holds config.json, model.safetensors in the build's precision (fp16 keeps the
LayerNorm affines and adaLN tables in fp32, as the fp16 graphs do; bf16 is all bf16, as the
release runs), torch.json (the engine's `TorchSettings`: attention "auto", CUDA graphs on),
export.json (the model source and the shape profiles, as an ONNX export records them, so the
runtime checks requests the same way) and, when one is found, a copy of libptdit_kernels.so.

The build itself (options, lock, cache, staging folder, components, manifest, swap) is
`builder/pipeline.py`'s, as for every backend; this module writes the transformer component.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
WEIGHTS = "model.safetensors"


def _kernels_library() -> Path | None:
    """libptdit_kernels.so where `ptdit_export.kernels` looks for it, if it was built."""
    from ptdit_export import kernels

    path = kernels.library_path()
    return path if path.is_file() else None


def torch_facts() -> dict[str, Any]:
    """What decides a torch folder's bytes (part of the build's cache key)."""
    import torch

    return {"backend": "torch", "torch": torch.__version__, "kernels": _file_facts(_kernels_library())}


def torch_transformer_into(
    folder: Path, model, config, profiles: dict[str, Any], precision: str, source: dict[str, Any]
) -> dict[str, Any]:
    """Write the transformer component for the torch engine into FOLDER (inside the build's
    staging folder); returns facts for the manifest."""
    import torch
    from safetensors.torch import save_file

    from ptdit_export.export.artifacts import write_json
    from ptdit_runtime.engines.torch_ref import SETTINGS_FILE, TorchSettings, model_in_precision

    if precision not in PRECISIONS:
        raise ValueError(
            f"--precision {precision!r} with --backend torch: choose one of {', '.join(PRECISIONS)}"
        )
    engine = TorchSettings(dtype=PRECISIONS[precision], attention="auto", cuda_graph=True)  # CUDA only
    library = _kernels_library()
    model = model_in_precision(model, engine.dtype)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    write_json(folder / "config.json", config.to_dict())
    write_json(folder / SETTINGS_FILE, dataclasses.asdict(engine))
    write_json(
        folder / "export.json",
        {
            "backend": "torch",
            "precision": precision,
            "profiles": {k: dataclasses.asdict(p) for k, p in profiles.items()},
            "source": source,
        },
    )
    if library is not None:
        shutil.copy2(library, folder / library.name)
    else:
        log.info("no libptdit_kernels.so found: on CUDA the engine runs SDPA (docs/gpu.md builds it)")
    return {"torch": torch.__version__}


def _file_facts(path: Path | None) -> list | None:
    if path is None:
        return None
    stat = path.stat()
    return [str(path), stat.st_size, int(stat.st_mtime)]
