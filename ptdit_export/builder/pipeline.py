"""`build`: model -> ONNX -> engine for the best backend, plus the pipeline folder around it.

Phases: 1. resolve the backend; 2. cache check against the manifest; 3. export the graph the
backend wants (TensorRT: plugin graph; ONNX Runtime: portable graph); 4. build the engine;
5. pipeline components (text encoder, tokenizer, VAE decoder, scheduler); 6. manifest, last.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptdit_export.builder import manifest as mf
from ptdit_export.builder.profiles import ShapeRange, input_shapes

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime")


@dataclass(frozen=True)
class BuildSettings:
    """How to build; written into the manifest beside the engine."""

    backend: str = "auto"  # auto: TensorRT when it and a GPU are present, else ONNX Runtime
    precision: str = "fp16"  # the graph's dtype (TensorRT 11 is strongly typed)
    shapes: ShapeRange = field(default_factory=ShapeRange)
    vae_scale: int = 8  # pixels per latent
    provider: str | None = None  # ONNX Runtime provider; None: CUDA if available, else CPU
    plugin_library: str | None = None  # TensorRT: libptdit_plugins.so; None: search
    optimization_level: int = 3  # TensorRT builder optimisation level
    opset: int = 18

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")


def resolve_backend(requested: str) -> str:
    from ptdit_export.builder.tensorrt import import_tensorrt, tensorrt_available

    if requested == "tensorrt":
        import_tensorrt()  # raises with what to install
        return "tensorrt"
    if requested == "onnxruntime":
        return "onnxruntime"
    if tensorrt_available():
        import torch

        if torch.cuda.is_available():
            return "tensorrt"
        log.info("TensorRT is installed but no CUDA GPU is visible: building for ONNX Runtime")
        return "onnxruntime"
    log.warning("TensorRT not found: building for ONNX Runtime instead (--backend tensorrt to insist)")
    return "onnxruntime"


def backend_facts(backend: str, settings: BuildSettings) -> dict[str, Any]:
    """Versions and device that decide the engine's bytes (part of the cache key)."""
    if backend == "tensorrt":
        import tensorrt as trt
        import torch

        return {"backend": backend, "tensorrt": trt.__version__, "device": torch.cuda.get_device_name()}
    import onnxruntime as ort

    from ptdit_export.builder.onnxruntime import default_provider

    return {
        "backend": backend,
        "onnxruntime": ort.__version__,
        "provider": settings.provider or default_provider(),
    }


def build(
    model_arg: str,
    out_dir: str | Path,
    settings: BuildSettings,
    seed: int = 0,
    components: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build MODEL_ARG into OUT_DIR; returns the manifest (a cache hit returns the old one)."""
    from ptdit_export.export.source import model_from_source, source_of
    from ptdit_export.export.transformer import ExportSettings, onnx_from_model
    from ptdit_export.model import load_config
    from ptdit_export.quant import QUANTIZED, float_precision, quantize_exported

    out_dir = Path(out_dir)
    # 1. backend
    backend = resolve_backend(settings.backend)
    source = source_of(model_arg, seed)
    config = load_config(source.get("checkpoint") or source.get("config") or source["preset"])
    profiles = settings.shapes.graph_profiles(config, settings.vae_scale)

    # 2. cache
    key = mf.build_key(
        source=mf.source_fingerprint(source),
        settings=dataclasses.asdict(settings),
        facts=backend_facts(backend, settings),
        components=sorted((components or {}).items()),
    )
    folder = out_dir / "transformer"
    if not force and mf.is_cache_hit(folder, key):
        log.info("%s is up to date (manifest key matches); --force rebuilds", out_dir)
        return mf.read_json(folder / mf.MANIFEST) | {"cache_hit": True}

    # 3. export
    opt = {k: p.opt for k, p in profiles.items()}
    step = config.patch_size * config.compress_ratios[1], config.patch_size * config.compress_ratios[2]
    export_settings = ExportSettings(
        precision=float_precision(settings.precision, backend),
        graph="plugin" if backend == "tensorrt" else "portable",
        opset=settings.opset,
        dynamic=True,
        batch=max(opt["batch"], 2),
        latent_height=max(opt["latent_height"], 2 * step[0]),
        latent_width=max(opt["latent_width"], 2 * step[1]),
        frames=opt["frames"] if opt["frames"] == 1 else max(opt["frames"], 2 * config.compress_ratios[0]),
        text_len=16,
        batch_profile=profiles["batch"],
        height_profile=profiles["latent_height"],
        width_profile=profiles["latent_width"],
        frames_profile=profiles["frames"],
        text_profile=profiles["text_len"],
    )
    model = model_from_source(source)
    onnx_path = onnx_from_model(model, out_dir, export_settings, source)
    if settings.precision in QUANTIZED:  # int8/fp8: calibrate with the sampler, write Q/DQ
        quantize_exported(
            out_dir, model, model_arg, settings.precision, backend, vae_scale=settings.vae_scale
        )

    # 4. engine
    files = ["model.onnx", "config.json", "export.json"]
    files += ["model.float.onnx", "quant.json"] if settings.precision in QUANTIZED else []
    if backend == "tensorrt":
        facts = _build_tensorrt(onnx_path, folder, config, profiles, settings, out_dir)
        files.append("engine.plan")
    else:
        from ptdit_export.builder.onnxruntime import OPTIMIZED, ort_model_from_onnx

        _, facts = ort_model_from_onnx(onnx_path, settings.provider)
        files.append(OPTIMIZED)

    # 5. components
    from ptdit_export.builder.components import write_components

    write_components(out_dir, model_arg, components or {})

    # 6. manifest, last
    return mf.write_manifest(
        folder,
        key,
        files,
        backend=backend,
        precision=settings.precision,
        profiles={k: dataclasses.asdict(p) for k, p in profiles.items()},
        source=source,
        settings=dataclasses.asdict(settings),
        **facts,
    )


def _build_tensorrt(
    onnx_path: Path, folder: Path, config, profiles, settings: BuildSettings, out_dir: Path
) -> dict:
    import onnx

    from ptdit_export.builder.tensorrt import engine_from_onnx, find_plugin_library
    from ptdit_export.export.plugin_ops import strip_functions

    library = find_plugin_library(settings.plugin_library)
    # the TensorRT-bound copy: custom nodes without bodies, weights shared with model.onnx
    trt_onnx = folder / "model.trt.onnx"
    onnx.save_model(strip_functions(onnx.load(str(onnx_path), load_external_data=False)), str(trt_onnx))
    return engine_from_onnx(
        trt_onnx,
        folder / "engine.plan",
        input_shapes(config, profiles),
        library,
        timing_cache=out_dir / "timing.cache",
        optimization_level=settings.optimization_level,
    )
