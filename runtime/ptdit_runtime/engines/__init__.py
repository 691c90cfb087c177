"""Engine backends behind one interface (`Engine.run(feeds) -> outputs`).

`load_engine(component_dir, backend, ...)` opens one component folder of an engine folder:
- "onnxruntime": component_dir/model.onnx on the CPU or CUDA provider (every component);
- "tensorrt":    component_dir/engine.plan (+ the plugin library named in manifest.json);
- "torch":       PTDiT in PyTorch from component_dir/config.json + weights (CPU, or CUDA with
                 the fused kernels and CUDA graphs; torch.json from `build --backend torch`);
- "ascend":      component_dir/model.om through ais_bench or CANN's acl (an Ascend NPU).
Backends import their heavy libraries only when chosen.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from ptdit_runtime.engines.base import Engine, TensorSpec

BACKENDS = ("onnxruntime", "tensorrt", "torch", "ascend")


def resolve_backend(component_dir: str | Path, backend: str = "auto") -> str:
    """'auto': TensorRT when an engine.plan is there and tensorrt imports; torch for a folder
    `build --backend torch` wrote (torch.json, no ONNX model); else ONNX Runtime."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} is not one of auto, {', '.join(BACKENDS)}")
        return backend
    component_dir = Path(component_dir)
    if (component_dir / "engine.plan").is_file():
        if importlib.util.find_spec("tensorrt") is not None:
            return "tensorrt"
        if not (component_dir / "model.onnx").is_file():
            raise RuntimeError(
                f"{component_dir} holds only a TensorRT engine and TensorRT is not installed: install it "
                "(pip install 'ptdit-export[tensorrt]') or export an ONNX model there (ptdit-export export)"
            )
    if (component_dir / "torch.json").is_file() and not (component_dir / "model.onnx").is_file():
        return "torch"
    if (component_dir / "model.om").is_file() and any(
        importlib.util.find_spec(m) for m in ("ais_bench", "acl")
    ):
        return "ascend"
    return "onnxruntime"


def onnx_model_path(component_dir: Path) -> Path:
    """model.optimized.onnx (what `ptdit-export build` saves for ONNX Runtime) if present, else model.onnx."""
    optimized = component_dir / "model.optimized.onnx"
    return optimized if optimized.is_file() else component_dir / "model.onnx"


def check_manifest(component_dir: Path, backend: str) -> None:
    """Refuse an engine.plan whose manifest (the folder's root manifest, else the component's own)
    says it was not built for this backend."""
    for manifest in (component_dir.parent / "manifest.json", component_dir / "manifest.json"):
        if not manifest.is_file():
            continue
        built = json.loads(manifest.read_text()).get("backend")
        if built and built != backend:
            raise ValueError(f"{component_dir} was built for {built}, not {backend}; pass backend={built!r}")
        return


def load_engine(component_dir: str | Path, backend: str = "auto", **options: Any) -> Engine:
    """Open one component. Options: provider, device_id, threads, io_binding (onnxruntime:
    model.optimized.onnx when the build saved one, else model.onnx); plugin_library, device_id,
    cuda_graph, trust_plugins (tensorrt); device, dtype, attention, cuda_graph, compile (torch)."""
    component_dir = Path(component_dir)
    backend = resolve_backend(component_dir, backend)
    if backend == "onnxruntime":
        from ptdit_runtime.engines.ort import OnnxRuntimeEngine

        keys = ("provider", "device_id", "threads", "io_binding")
        return OnnxRuntimeEngine(
            onnx_model_path(component_dir), **{k: v for k, v in options.items() if k in keys}
        )
    if backend == "tensorrt":
        from ptdit_runtime.engines.trt import TensorRTEngine

        check_manifest(component_dir, "tensorrt")
        keys = ("plugin_library", "device_id", "cuda_graph", "trust_plugins")
        return TensorRTEngine(
            component_dir / "engine.plan", **{k: v for k, v in options.items() if k in keys}
        )
    if backend == "ascend":
        from ptdit_runtime.engines.om import OmEngine

        check_manifest(component_dir, "ascend")
        return OmEngine(component_dir, **{k: v for k, v in options.items() if k in ("device_id", "session")})
    from ptdit_runtime.engines.torch_ref import TorchEngine

    keys = ("device", "dtype", "attention", "cuda_graph", "compile")
    return TorchEngine(component_dir, **{k: v for k, v in options.items() if k in keys})


__all__ = ["BACKENDS", "Engine", "TensorSpec", "load_engine", "resolve_backend"]
