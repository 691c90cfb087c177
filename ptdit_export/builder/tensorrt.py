"""TensorRT engines from the plugin graph, with our IPluginV3 plugins.

The engine folder gets engine.plan and a copy of libptdit_plugins.so, recorded in the manifest
as "plugin_library": {"path", "sha256"}; the runtime registers that copy after checking the hash.
The library is not embedded in the plan: IBuilderConfig::setPluginsToSerialize (Python
`plugins_to_serialize`) applies to version-compatible engines only (NvInfer.h), and this engine
is not one (version compatibility restricts the build to lean-runtime layers).

Parsing, configuration and the build go through Polygraphy's TensorRT loaders (NetworkFromOnnxPath,
CreateConfig with one Profile, EngineBytesFromNetwork with the timing cache), the tools
TensorRT users already know; docs/plugins.md shows the matching `polygraphy run` comparison.
Written against the TensorRT 10/11 Python API and Polygraphy 0.49+. No TensorRT builder can be installed on this
project's machines (see docs/plugins.md), so this module is exercised here only up to the
point where it needs `tensorrt`; everything it consumes (the plugin graph without function
bodies, the profiles, the plugin library) is built and tested.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PLUGIN_LIBRARY = "libptdit_plugins.so"
INSTALL_HINT = (
    "TensorRT is not installed: install TensorRT 10.8+ with its Python bindings "
    "(e.g. `pip install tensorrt` from NVIDIA's package index, or the tarball's python/ wheels) on a "
    "machine with an NVIDIA GPU, or use --backend onnxruntime"
)


class TensorRTUnavailable(RuntimeError):
    pass


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: F401
    except ImportError as err:
        raise TensorRTUnavailable(INSTALL_HINT) from err
    if not hasattr(trt, "Builder"):
        raise TensorRTUnavailable(
            "the installed `tensorrt` package has no builder (a stub or the lean/dispatch runtime): "
            + INSTALL_HINT
        )
    return trt


def tensorrt_available() -> bool:
    try:
        import_tensorrt()
    except TensorRTUnavailable:
        return False
    return True


def find_plugin_library(explicit: str | Path | None = None) -> Path:
    """The plugin library: --plugins, $PTDIT_PLUGIN_LIBRARY, or the CMake build folder."""
    root = Path(__file__).resolve().parents[2]
    candidates = [explicit, os.environ.get("PTDIT_PLUGIN_LIBRARY"), root / "build" / "lib" / PLUGIN_LIBRARY]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).resolve()
    raise FileNotFoundError(
        f"{PLUGIN_LIBRARY} not found: build it with `cmake -S . -B build -DTENSORRT_INCLUDE_DIR=<TensorRT>/include "
        "&& cmake --build build -j`, then pass --plugins build/lib/libptdit_plugins.so"
    )


def load_plugins(trt, library: Path) -> None:
    """Register our plugin creators from LIBRARY unless they already are (a plain dlopen of the
    library registers them with the loaded TensorRT; load_library would then fail)."""
    from ptdit_runtime.engines.trt import register_plugins

    register_plugins(trt, trt.Logger(trt.Logger.WARNING), library)


def stage_plugin_library(library: Path, folder: Path) -> dict:
    """Copy LIBRARY into the engine FOLDER; returns the manifest record {"path", "sha256"}."""
    data = Path(library).read_bytes()
    _atomic_write(Path(folder) / PLUGIN_LIBRARY, data)
    return {"path": PLUGIN_LIBRARY, "sha256": hashlib.sha256(data).hexdigest()}


def engine_from_onnx(
    onnx_path: Path,
    engine_path: Path,
    shapes: dict[str, tuple[tuple, tuple, tuple]],
    plugin_library: Path,
    timing_cache: Path | None = None,
    optimization_level: int = 3,
) -> dict:
    """Parse ONNX_PATH (custom nodes without bodies), build one profile, write the engine
    atomically and copy the plugin library beside it; returns facts for the manifest (TensorRT
    version, device, "plugin_library" record)."""
    trt = import_tensorrt()
    load_plugins(trt, plugin_library)
    log.info("building the TensorRT engine (minutes for large models)")
    serialized = serialized_engine(trt, onnx_path, shapes, timing_cache, optimization_level)
    _atomic_write(engine_path, memoryview(serialized))
    record = stage_plugin_library(plugin_library, engine_path.parent)  # the runtime registers this copy
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "unknown"
    return {"tensorrt": trt.__version__, "device": device, "plugin_library": record}


def serialized_engine(
    trt, onnx_path: Path, shapes: dict, timing_cache: Path | None, optimization_level: int
) -> bytes:
    """Parse, configure and build with Polygraphy's TensorRT loaders (plugins registered first):
    one optimisation profile, the timing cache read when present and appended to."""
    try:
        from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile
        from polygraphy.exception import PolygraphyException
    except ImportError as err:
        raise TensorRTUnavailable(
            "the TensorRT build uses Polygraphy's loaders: pip install 'ptdit-export[tensorrt]' (polygraphy)"
        ) from err
    profile = Profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.add(name, min=lo, opt=opt, max=hi)
    # TensorRT 10: strongly typed on request; 11 builds every network so (the flag is deprecated)
    strongly = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=strongly)
    cache_in = str(timing_cache) if timing_cache is not None and timing_cache.is_file() else None
    config = CreateConfig(
        profiles=[profile], builder_optimization_level=optimization_level, load_timing_cache=cache_in
    )
    cache_out = str(timing_cache) if timing_cache is not None else None
    try:
        return bytes(EngineBytesFromNetwork(network, config=config, save_timing_cache=cache_out)())
    except PolygraphyException as err:
        raise RuntimeError(
            f"TensorRT could not build {onnx_path}: {err} (run with -vv for the builder log)"
        ) from None


def _atomic_write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
