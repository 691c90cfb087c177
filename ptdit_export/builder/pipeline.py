"""`build`: model -> ONNX -> engine for the best backend, plus the pipeline folder around it.

Phases: 1. check every option and input, resolve the backend; 2. take the folder's lock;
3. cache check against the manifest (key over the inputs, every file's hash); 4. export the
graph the backend wants (TensorRT: plugin graph; ONNX Runtime: portable graph) into a staging
folder beside OUT; 5. build the engine; 6. pipeline components (text encoder, tokenizer, VAE
decoder, scheduler); 7. the root manifest, last; 8. swap the staging folder in, in one step.
Any failure before 8 leaves OUT as it was (builder/staging.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptdit_export.builder import manifest as mf
from ptdit_export.builder import staging
from ptdit_export.builder.profiles import ShapeRange, input_shapes
from ptdit_export.progress import Stages

log = logging.getLogger(__name__)
STAGES = Stages(log)  # timed build stages (benchmarks/bench_export.py reads the lines)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


@dataclass(frozen=True)
class BuildSettings:
    """How to build; written into the manifest beside the engine."""

    backend: str = "auto"  # auto: TensorRT when it and a GPU are present, else ONNX Runtime
    precision: str = "fp16"  # the graph's (torch: the weights') dtype (TensorRT 11 is strongly typed)
    shapes: ShapeRange = field(default_factory=ShapeRange)
    vae_scale: int = 8  # pixels per latent
    provider: str | None = None  # ONNX Runtime provider; None: CUDA if available, else CPU
    plugin_library: str | None = None  # TensorRT: libptdit_plugins.so; None: search
    optimization_level: int = 3  # TensorRT builder optimisation level
    opset: int = 18

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if not isinstance(self.vae_scale, int) or not 1 <= self.vae_scale <= 64:
            raise ValueError(f"--vae-scale {self.vae_scale}: give pixels per latent, from 1 to 64")
        if self.backend == "torch" and self.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(
                f"--precision {self.precision} with --backend torch: choose fp32, fp16 or bf16 "
                "(int8/fp8 are ONNX Runtime and TensorRT graphs)"
            )


class BuildInterrupted(RuntimeError):
    """SIGTERM or Ctrl-C stopped the build; the previous folder is unchanged."""


class OutputError(ValueError):
    """--out cannot be written or is not an engine folder this build may replace."""


def check_output(out: Path) -> None:
    """OUT's parent must be a writable folder, and OUT new, empty or an engine folder (never
    replace a folder of other files)."""
    parent = out.parent
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"--out {out}: {parent} is a file, not a folder; give a folder path")
    if not parent.is_dir():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(
                f"--out {out}: cannot create {parent} ({err.strerror}); give a writable folder"
            ) from None
    probe = parent / f".{out.name}.probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise OutputError(
            f"--out {out}: cannot write in {parent} ({err.strerror}); give a folder you can write to"
        ) from None
    if out.is_dir() and any(out.iterdir()):
        known = (mf.MANIFEST, "model_index.json", "transformer")
        if not any((out / name).exists() for name in known):
            raise OutputError(
                f"--out {out} holds other files (no manifest.json or model_index.json); "
                "a build replaces the whole folder: give a new or empty folder"
            )


def resolve_backend(requested: str) -> str:
    from ptdit_export.builder.tensorrt import import_tensorrt, tensorrt_available

    if requested == "tensorrt":
        import_tensorrt()  # raises with what to install
        return "tensorrt"
    if requested in ("onnxruntime", "torch"):
        return requested
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
    if backend == "torch":
        from ptdit_export.builder.torch_folder import torch_facts

        return torch_facts()
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


@dataclass(frozen=True)
class BuildPlan:
    """A build's inputs, checked (phase 1): everything `run` needs, nothing heavy done yet."""

    model_arg: str
    out: Path
    settings: BuildSettings
    source: dict[str, Any]
    config: Any
    profiles: dict[str, Any]
    components: dict[str, Any]


def prepare(
    model_arg: str,
    out_dir: str | Path,
    settings: BuildSettings,
    seed: int = 0,
    components: dict[str, Any] | None = None,
) -> BuildPlan:
    """Phase 1: every option and input checked and bounded; raises ValueError naming the fix."""
    from ptdit_export.builder.components import resolve_components
    from ptdit_export.export.source import source_of
    from ptdit_export.model import load_config

    out = Path(os.path.realpath(out_dir))  # a symlinked folder: build where it points
    source = source_of(model_arg, seed)
    config = load_config(source.get("checkpoint") or source.get("config") or source["preset"])
    profiles = settings.shapes.graph_profiles(config, settings.vae_scale)
    wanted = resolve_components(model_arg, components or {})
    check_output(out)
    staging.fail_point("options")
    return BuildPlan(model_arg, out, settings, source, config, profiles, wanted)


def run(plan: BuildPlan, force: bool = False, lock_timeout: float | None = 600.0) -> dict[str, Any]:
    """Phases 2-8 of a prepared build; returns the manifest (a cache hit returns the old one).
    lock_timeout: seconds to wait for another build of the folder (0: fail at once)."""
    from ptdit_export.builder.lock import build_lock

    out, settings = plan.out, plan.settings
    backend = resolve_backend(settings.backend)
    STAGES.times.clear()
    # 2. one build at a time; a folder half-swapped by a crash is put back, stale staging removed
    with build_lock(out, lock_timeout), _interruptible() as guard:
        staging.fail_point("locked")
        staging.recover(out)
        # 3. cache: key over the real inputs, the backend actually built, every file's hash
        parts = mf.input_parts(
            source=mf.source_fingerprint(plan.source),
            components=mf.components_fingerprint(plan.components),
            settings=dataclasses.asdict(settings) | {"backend": backend},
            facts=backend_facts(backend, settings),
        )
        key = mf.digest(parts)
        if not force:
            why = mf.cache_status(out, key, parts, backend)
            if why is None:
                log.info("%s is up to date (inputs and every file match its manifest); --force rebuilds", out)
                return mf.read_json(out / mf.MANIFEST) | {"cache_hit": True}
            log.info("building %s: %s", out, why)
        stage = staging.staging_dir(out)
        stage.mkdir()
        try:
            info = _build_into(stage, plan, backend)
            # 7. the manifest, last, over every file of the staging folder
            staging.fail_point("manifest")
            with STAGES("manifest (size and sha256 of every file), fsync"):
                manifest = mf.write_folder_manifest(stage, key, parts, **info)
                staging.seal(stage)
            # 8. one step: the new folder, or (on any failure above) the old one untouched
            staging.swap_in(stage, out, on_commit=guard.commit)
        except Exception as err:
            if guard.interrupted:  # libraries (torch.onnx) may wrap our exception in theirs
                raise BuildInterrupted(guard.MESSAGE) from err
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    log.info("built %s for %s", out, backend)
    return manifest


def build(
    model_arg: str,
    out_dir: str | Path,
    settings: BuildSettings,
    seed: int = 0,
    components: dict[str, Any] | None = None,
    force: bool = False,
    lock_timeout: float | None = 600.0,
) -> dict[str, Any]:
    """Build MODEL_ARG into OUT_DIR (prepare, then run); returns the manifest."""
    return run(prepare(model_arg, out_dir, settings, seed, components), force, lock_timeout)


def _build_into(stage: Path, plan: BuildPlan, backend: str) -> dict[str, Any]:
    """Phases 4-6 into the staging folder; returns the manifest's descriptive fields."""
    from ptdit_export.export.source import model_from_source
    from ptdit_export.export.transformer import ExportSettings, onnx_from_model
    from ptdit_export.quant import QUANTIZED, float_precision, quantize_exported

    config, profiles, settings = plan.config, plan.profiles, plan.settings
    # 4. export (torch: the weights, no graph)
    staging.fail_point("export")
    if backend == "torch":
        from ptdit_export.builder.torch_folder import torch_transformer_into
        from ptdit_export.export.artifacts import update_model_index

        facts = torch_transformer_into(
            stage / "transformer",
            model_from_source(plan.source),
            config,
            profiles,
            settings.precision,
            plan.source,
        )
        update_model_index(stage, transformer="transformer")
        return _components_and_info(stage, plan, backend, facts)
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
    model = model_from_source(plan.source)
    onnx_path = onnx_from_model(model, stage, export_settings, plan.source)
    if settings.precision in QUANTIZED:  # int8/fp8: calibrate with the sampler, write Q/DQ
        quantize_exported(
            stage, model, plan.model_arg, settings.precision, backend, vae_scale=settings.vae_scale
        )

    # 5. engine
    staging.fail_point("engine")
    if backend == "tensorrt":
        if (plan.out / "timing.cache").is_file():  # the previous build's timings speed this one up
            shutil.copyfile(plan.out / "timing.cache", stage / "timing.cache")
        facts = _build_tensorrt(onnx_path, stage / "transformer", config, profiles, settings, stage)
        if "plugin_library" in facts:  # the record's path, relative to the folder's root manifest
            record = facts["plugin_library"]
            facts["plugin_library"] = record | {"path": f"transformer/{record['path']}"}
    else:
        from ptdit_export.builder.onnxruntime import ort_model_from_onnx

        with STAGES("ONNX Runtime optimised model"):
            _, facts = ort_model_from_onnx(onnx_path, settings.provider)

    return _components_and_info(stage, plan, backend, facts)


def _components_and_info(stage: Path, plan: BuildPlan, backend: str, facts: dict[str, Any]) -> dict[str, Any]:
    """Phase 6 into the staging folder; returns the manifest's descriptive fields."""
    from ptdit_export.builder.components import write_components

    settings, profiles = plan.settings, plan.profiles
    # 6. components
    staging.fail_point("components")
    with STAGES("components (text encoder, tokenizer, VAE decoder, scheduler)"):
        write_components(stage, plan.model_arg, plan.components)
    return {
        "backend": backend,
        "precision": settings.precision,
        "profiles": {k: dataclasses.asdict(p) for k, p in profiles.items()},
        "source": plan.source,
        "settings": dataclasses.asdict(settings) | {"backend": backend},
        **facts,
    }


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


class _interruptible:
    """SIGTERM raises BuildInterrupted in the main thread until the new folder is swapped in, so
    the staging folder is removed and the lock released on the way out (SIGKILL cannot be
    caught: the next build cleans up). After the swap a SIGTERM only lets the build finish."""

    def __enter__(self):
        import threading

        self.previous, self.committed, self.interrupted = None, False, False
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def commit(self) -> None:
        self.committed = True

    MESSAGE = "the build was stopped (SIGTERM); the previous folder is unchanged"

    def _handle(self, signum, frame):
        if self.committed:
            log.warning("SIGTERM after the new folder was swapped in: finishing the build")
            return
        self.interrupted = True
        raise BuildInterrupted(self.MESSAGE)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False
