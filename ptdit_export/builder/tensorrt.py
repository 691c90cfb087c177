"""TensorRT engines from the plugin graph, with our IPluginV3 plugins.

Written against the TensorRT 10/11 Python API. No TensorRT builder can be installed on this
project's machines (see docs/plugins.md), so this module is exercised here only up to the
point where it needs `tensorrt`; everything it consumes (the plugin graph without function
bodies, the profiles, the plugin library) is built and tested.
"""

from __future__ import annotations

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
    """Register our plugin creators. The library exports getCreators()/setLoggerFinder() and does
    not link libnvinfer, so it must be loaded through the registry (a bare dlopen registers nothing)."""
    trt.init_libnvinfer_plugins(trt.Logger(trt.Logger.WARNING), "")
    if trt.get_plugin_registry().load_library(str(library)) is None:
        raise RuntimeError(f"TensorRT could not load the plugin library {library}")


def engine_from_onnx(
    onnx_path: Path,
    engine_path: Path,
    shapes: dict[str, tuple[tuple, tuple, tuple]],
    plugin_library: Path,
    timing_cache: Path | None = None,
    optimization_level: int = 3,
) -> dict:
    """Parse ONNX_PATH (custom nodes without bodies), build one profile, write the engine
    atomically; returns facts for the manifest (TensorRT version, device)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    load_plugins(trt, plugin_library)

    builder = trt.Builder(logger)
    flags = 0
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None:  # TensorRT 10; always on (and deprecated) in 11
        flags |= 1 << int(strongly)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.builder_optimization_level = optimization_level
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    config.plugins_to_serialize = [str(plugin_library)]  # the engine carries its plugins

    log.info("building the TensorRT engine (minutes for large models)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine; run with -vv for the builder log")
    _atomic_write(engine_path, memoryview(serialized))
    if timing_cache is not None:
        _atomic_write(timing_cache, memoryview(config.get_timing_cache().serialize()))
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "unknown"
    return {"tensorrt": trt.__version__, "device": device}


def _atomic_write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
