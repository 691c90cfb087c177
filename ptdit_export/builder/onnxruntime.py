"""ONNX Runtime "engines": the graph optimised once for a provider and saved beside it."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

OPTIMIZED = "model.optimized.onnx"


def default_provider() -> str:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return "CUDAExecutionProvider" if "CUDAExecutionProvider" in available else "CPUExecutionProvider"


def ort_model_from_onnx(onnx_path: Path, provider: str | None = None) -> tuple[Path, dict]:
    """Optimise ONNX_PATH for PROVIDER (extended level: provider-independent fusions, so the
    saved graph stays portable across machines) and save it beside; returns (path, facts)."""
    import onnxruntime as ort

    provider = provider or default_provider()
    if provider not in ort.get_available_providers():
        raise RuntimeError(
            f"{provider} is not available in this onnxruntime ({ort.get_available_providers()}); "
            "install onnxruntime-gpu for CUDA"
        )
    out = onnx_path.with_name(OPTIMIZED)
    tmp = out.with_name(f".{OPTIMIZED}.partial")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp)
    if onnx_path.with_name(onnx_path.name + ".data").exists() or onnx_path.stat().st_size > 2**30:
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", OPTIMIZED + ".data"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
    ort.InferenceSession(str(onnx_path), options, providers=[provider])
    tmp.replace(out)
    log.info("saved %s optimised for %s", out, provider)
    return out, {"onnxruntime": ort.__version__, "provider": provider}
