"""ONNX Runtime backend: CPU or CUDA provider; I/O binding on CUDA (optional on CPU).

With I/O binding, inputs become OrtValues on the provider's device and outputs are
allocated there by ONNX Runtime, then copied back once per call; an input named in
`constant` whose array object is the one bound last time keeps its device copy.
The CUDA provider needs the onnxruntime-gpu wheel (import torch first when both are
installed so they share one CUDA/cuDNN).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ptdit_runtime.engines.base import Engine, EngineLoadError, TensorSpec
from ptdit_runtime.engines.dtypes import ONNX_ELEMENT_BFLOAT16, ONNX_TYPES

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def max_threads() -> int:
    """The most intra-op threads accepted: 4 per core, at least 64 (more only thrash or hang)."""
    return max(64, 4 * (os.cpu_count() or 1))


def check_threads(threads: int | None) -> None:
    if threads is None:
        return
    limit = max_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= limit:
        raise ValueError(
            f"threads={threads!r}: pass a whole number from 1 to {limit} "
            f"(this machine has {os.cpu_count()} cores), or none for ONNX Runtime's default"
        )


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _spec(arg) -> TensorSpec:
    if arg.type not in ONNX_TYPES:
        raise ValueError(f"tensor {arg.name!r} has type {arg.type}, which this runtime does not handle")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, ONNX_TYPES[arg.type], shape)


def resolve_provider(provider: str | None) -> str:
    """'cpu' | 'cuda'; None picks CUDA when this onnxruntime build offers it."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider is None:
        return "cuda" if PROVIDERS["cuda"] in available else "cpu"
    provider = provider.lower().replace("executionprovider", "")
    if provider not in PROVIDERS:
        raise ValueError(f"provider {provider!r} is not one of {sorted(PROVIDERS)}")
    if PROVIDERS[provider] not in available:
        raise RuntimeError(
            f"onnxruntime {ort.__version__} here offers {available}, not {PROVIDERS[provider]}; "
            "install onnxruntime-gpu (pip install 'ptdit-export[gpu]') for CUDA, or pass provider='cpu'"
        )
    return provider


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(
        self,
        model: str | Path,
        provider: str | None = "cpu",
        device_id: int = 0,
        threads: int | None = None,
        io_binding: bool | None = None,
    ):
        import onnxruntime as ort

        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; export the component first (ptdit-export export)"
            )
        check_threads(threads)
        self.path = path
        self.provider = resolve_provider(provider)
        self.device = "cuda" if self.provider == "cuda" else "cpu"
        self.device_id = device_id
        self.io_binding = self.device == "cuda" if io_binding is None else io_binding
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers: list = [PROVIDERS["cpu"]]
        if self.provider == "cuda":
            providers.insert(0, (PROVIDERS["cuda"], {"device_id": device_id}))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime's InvalidProtobuf, Fail, ... (no common base class)
            raise EngineLoadError(
                f"{path} cannot be loaded by ONNX Runtime ({_first_line(err)}); the file is damaged or "
                "not an ONNX model: rebuild the engine folder (`ptdit-export build --force`)"
            ) from None
        self.inputs = {a.name: _spec(a) for a in self.session.get_inputs()}
        self.outputs = {a.name: _spec(a) for a in self.session.get_outputs()}
        self._names = list(self.outputs)
        self._bound: dict[str, tuple] = {}  # name -> (caller's array, OrtValue, converted array)
        log.debug("loaded %s on %s: %s", path, self.provider, self.describe())

    def _ort_value(self, arr: np.ndarray, spec: TensorSpec):
        import onnxruntime as ort

        if spec.dtype == "bfloat16":
            if self.device == "cpu":
                return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(arr, ONNX_ELEMENT_BFLOAT16)
            value = ort.OrtValue.ortvalue_from_shape_and_type(
                arr.shape, ONNX_ELEMENT_BFLOAT16, self.device, self.device_id
            )
            value.update_inplace(arr)
            return value
        return ort.OrtValue.ortvalue_from_numpy(arr, self.device, self.device_id)

    def run(self, feeds: Mapping[str, np.ndarray], constant: Iterable[str] = ()) -> dict[str, np.ndarray]:
        raw = dict(feeds)
        prepared = self.prepare_feeds(raw)
        if not self.io_binding:
            if any(s.dtype == "bfloat16" for s in self.inputs.values()):
                values = {n: self._ort_value(a, self.inputs[n]) for n, a in prepared.items()}
                outs = self.session.run_with_ort_values(self._names, values)
                outs = [v.numpy() for v in outs]
            else:
                outs = self._run(lambda: self.session.run(self._names, prepared))
            return {n: self.finish_output(n, o) for n, o in zip(self._names, outs)}

        constant = set(constant)
        binding = self.session.io_binding()
        for name, arr in prepared.items():
            cached = self._bound.get(name)
            if name in constant and cached is not None and cached[0] is raw[name]:
                value = cached[1]
            else:
                value = self._ort_value(arr, self.inputs[name])
                # the caller's array (for the identity check) and the converted one, which a CPU
                # OrtValue shares memory with and so must outlive it
                self._bound[name] = (raw[name], value, arr)
            binding.bind_ortvalue_input(name, value)
        for name in self._names:
            binding.bind_output(name, self.device, self.device_id)
        self._run(lambda: self.session.run_with_iobinding(binding))
        outs = binding.copy_outputs_to_cpu()
        return {n: self.finish_output(n, o) for n, o in zip(self._names, outs)}

    def _run(self, call):
        try:
            return call()
        except Exception as err:  # onnxruntime's Fail, RuntimeException, InvalidArgument, ...
            if type(err).__module__.startswith("onnxruntime"):
                raise EngineLoadError(
                    f"{self.path} failed while running ({_first_line(err)}); if the engine folder was "
                    "changed, check it with `ptdit-export verify DIR --files` and rebuild it"
                ) from None
            raise

    def close(self) -> None:
        self._bound.clear()
        self.session = None
