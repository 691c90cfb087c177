"""`build --backend torch`: a pipeline folder the runtime's torch engine runs, no ONNX needed.

transformer/ holds config.json, model.safetensors in the build's precision (fp16 keeps the
LayerNorm affines and adaLN tables in fp32, as the fp16 graphs do; bf16 is all bf16, as the
release runs), torch.json (the engine's `TorchSettings`: attention "auto", CUDA graphs on),
export.json (the model source and the shape profiles, as an ONNX export records them, so the
runtime checks requests the same way) and, when one is found, a copy of libptdit_kernels.so.

Phases: 1. source, config, profiles; 2. cache check against the manifest; 3. weights and
settings into a temporary folder renamed into place; 4. pipeline components; 5. manifest, last.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptdit_export.builder import manifest as mf
from ptdit_export.builder.profiles import ShapeRange

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class TorchBuildSettings:
    """How to build a torch folder; written into the manifest beside the weights."""

    precision: str = "bf16"  # fp32 | fp16 | bf16: the weights' (and the engine's) dtype
    shapes: ShapeRange = field(default_factory=ShapeRange)  # recorded so requests are checked
    vae_scale: int = 8  # pixels per latent
    attention: str = "auto"  # the engine's default: fused kernels on CUDA when they load, else SDPA
    cuda_graph: bool = True  # the engine's default: one captured step per input shape on CUDA
    kernels_library: str | None = None  # libptdit_kernels.so to copy in; None: the default search

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")


def _kernels_library(given: str | None) -> Path | None:
    from ptdit_export import kernels

    if given:
        path = Path(given)
        if not path.is_file():
            raise FileNotFoundError(f"kernels library {path} does not exist; build it (docs/gpu.md)")
        return path
    path = kernels.library_path()
    return path if path.is_file() else None


def torch_folder_from_model(
    model_arg: str,
    out_dir: str | Path,
    settings: TorchBuildSettings,
    seed: int = 0,
    components: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build MODEL_ARG into OUT_DIR for the torch engine; returns the manifest."""
    import torch

    from ptdit_export.export.artifacts import atomic_dir, update_model_index, write_json
    from ptdit_export.export.source import model_from_source, source_of
    from ptdit_export.model import load_config
    from ptdit_runtime.engines.torch_ref import SETTINGS_FILE, TorchSettings, model_in_precision

    out_dir = Path(out_dir)
    # 1. source, config, profiles
    source = source_of(model_arg, seed)
    config = load_config(source.get("checkpoint") or source.get("config") or source["preset"])
    profiles = settings.shapes.graph_profiles(config, settings.vae_scale)
    library = _kernels_library(settings.kernels_library)
    engine = TorchSettings(
        dtype=PRECISIONS[settings.precision], attention=settings.attention, cuda_graph=settings.cuda_graph
    )

    # 2. cache
    key = mf.build_key(
        source=mf.source_fingerprint(source),
        settings=dataclasses.asdict(settings),
        facts={"backend": "torch", "torch": torch.__version__, "kernels": _file_facts(library)},
        components=sorted((components or {}).items()),
    )
    folder = out_dir / "transformer"
    if not force and mf.is_cache_hit(folder, key):
        log.info("%s is up to date (manifest key matches); --force rebuilds", out_dir)
        return mf.read_json(folder / mf.MANIFEST) | {"cache_hit": True}

    # 3. weights in the engine's precision, settings, shapes
    model = model_in_precision(model_from_source(source), engine.dtype)
    files = [WEIGHTS, "config.json", "export.json", SETTINGS_FILE]
    with atomic_dir(folder) as tmp:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        write_json(tmp / "config.json", config.to_dict())
        write_json(tmp / SETTINGS_FILE, dataclasses.asdict(engine))
        write_json(
            tmp / "export.json",
            {
                "backend": "torch",
                "precision": settings.precision,
                "profiles": {k: dataclasses.asdict(p) for k, p in profiles.items()},
                "source": source,
            },
        )
        if library is not None:
            shutil.copy2(library, tmp / library.name)
            files.append(library.name)
        else:
            log.info("no libptdit_kernels.so found: on CUDA the engine runs SDPA (docs/gpu.md builds it)")
    update_model_index(out_dir, transformer="transformer")

    # 4. components
    from ptdit_export.builder.components import write_components

    write_components(out_dir, model_arg, components or {})

    # 5. manifest, last
    return mf.write_manifest(
        folder,
        key,
        files,
        backend="torch",
        precision=settings.precision,
        profiles={k: dataclasses.asdict(p) for k, p in profiles.items()},
        source=source,
        settings=dataclasses.asdict(settings),
        torch=torch.__version__,
    )


def _file_facts(path: Path | None) -> list | None:
    if path is None:
        return None
    stat = path.stat()
    return [str(path), stat.st_size, int(stat.st_mtime)]
