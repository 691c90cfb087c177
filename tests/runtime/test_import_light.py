"""The runtime core never imports torch: checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CORE_MODULES = (
    "ptdit_runtime",
    "ptdit_runtime.pipeline",
    "ptdit_runtime.engines.ort",
    "ptdit_runtime.engines.trt",
    "ptdit_runtime.text",
    "ptdit_runtime.vae",
    "ptdit_runtime.media",
    "ptdit_runtime.schedulers.rflow",
    "ptdit_runtime.schedulers.ddim",
    "ptdit_runtime.schedulers.dpmsolver",
)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


def test_core_imports_without_torch():
    result = run_python(
        f"""
        import importlib, sys
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        heavy = sorted(m for m in ("torch", "transformers", "diffusers", "tensorrt") if m in sys.modules)
        assert not heavy, heavy
        print("ok")
        """
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_generation_on_onnxruntime_never_imports_torch(engine_dir):
    """Load a whole engine folder and generate with ONNX Runtime, then look at sys.modules."""
    result = run_python(
        f"""
        import sys
        from ptdit_runtime import Pipeline
        pipe = Pipeline.from_dir({str(engine_dir)!r}, backend="onnxruntime", provider="cpu")
        out = pipe("a red circle on the blue background", steps=2, guidance=4.0, seed=0)
        assert out.images[0].shape == (32, 32, 3), out.images[0].shape
        heavy = sorted(m for m in ("torch", "transformers", "diffusers", "tensorrt") if m in sys.modules)
        assert not heavy, heavy
        print("ok")
        """
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
