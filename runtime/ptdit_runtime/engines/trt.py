"""TensorRT backend (TensorRT 10/11 Python API + cuda-python), imported lazily.

Registers the PT-DiT plugins first, deserialises DIR/transformer/engine.plan, keeps one device buffer per I/O tensor (grown
when a larger shape arrives), sets input shapes, copies in, runs `execute_async_v3` on its
own stream and copies out. With `cuda_graph=True` each distinct set of input shapes is
captured once into a CUDA graph (after one plain run, which lets TensorRT finish its lazy
set-up) and replayed afterwards; growing a buffer drops the captured graphs.

Plugins: `ptdit-export build` embeds the plugin library in the engine (plugins_to_serialize),
so deserialising needs the runtime's permission to load host code (`allow_host_code`, on by
default when no library is given). A library given explicitly (argument or
$PTDIT_PLUGIN_LIBRARY) is loaded through the plugin registry instead: it exports
getCreators(), so a bare dlopen would register nothing.

Not run in this project: no machine here has TensorRT (see docs/runtime.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ptdit_runtime.engines.base import Engine, TensorSpec

log = logging.getLogger(__name__)

PLUGIN_ENV = "PTDIT_PLUGIN_LIBRARY"  # path of libptdit_plugins.so (the same variable the build reads)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as err:
        raise RuntimeError(
            "the tensorrt backend needs TensorRT 10 or 11 and cuda-python: pip install "
            "'ptdit-export[tensorrt]' on a machine that can reach NVIDIA's package index "
            "(or use backend='onnxruntime')"
        ) from err
    return trt


def import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as err:
            raise RuntimeError("the tensorrt backend needs cuda-python: pip install cuda-python") from err
    return cudart


def plugin_library_path(path: str | Path | None) -> Path | None:
    """The library to register: `path`, else $PTDIT_PLUGIN_LIBRARY, else None (use the embedded copy)."""
    path = path or os.environ.get(PLUGIN_ENV)
    if not path:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"TensorRT plugin library {path} not found; build it (cmake, see README) and pass "
            f"plugin_library=... or set {PLUGIN_ENV}"
        )
    return Path(path)


def register_plugins(trt, logger, library: Path | None) -> None:
    trt.init_libnvinfer_plugins(logger, "")
    if library is not None and trt.get_plugin_registry().load_library(str(library)) is None:
        raise RuntimeError(f"TensorRT could not load the plugin library {library}")


class _Cuda:
    """The few CUDA runtime calls this backend makes, with errors turned into exceptions."""

    def __init__(self):
        self.rt = import_cudart()

    def __call__(self, fn_name: str, *args):
        result = getattr(self.rt, fn_name)(*args)
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"{fn_name} failed: {err} {text}")
        return rest[0] if len(rest) == 1 else (rest or None)


# trt.DataType member -> our dtype name (FP8 / INT4 tensors never appear at this engine's I/O)
TRT_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
}


def trt_dtype_names(trt) -> dict:
    return {getattr(trt.DataType, k): v for k, v in TRT_DTYPES.items() if hasattr(trt.DataType, k)}


def host_dtype(name: str) -> np.dtype:
    """NumPy dtype of a tensor's host copy (bfloat16 travels as uint16 bit patterns)."""
    return np.dtype(np.uint16) if name == "bfloat16" else np.dtype(name)


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(
        self,
        plan: str | Path,
        plugin_library: str | Path | None = None,
        device_id: int = 0,
        cuda_graph: bool = False,
        allow_host_code: bool | None = None,
    ):
        """allow_host_code: let the engine load the plugin library it carries (None: when no
        plugin library is given to register here)."""
        trt = import_tensorrt()
        self.cuda = _Cuda()
        path = Path(plan)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; build it with `ptdit-export build --backend tensorrt`"
            )
        library = plugin_library_path(plugin_library)
        self.cuda("cudaSetDevice", device_id)
        self._logger = trt.Logger(trt.Logger.WARNING)
        register_plugins(trt, self._logger, library)
        self._runtime = trt.Runtime(self._logger)
        if (library is None) if allow_host_code is None else allow_host_code:
            self._runtime.engine_host_code_allowed = True  # the engine's serialised plugin library
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT {trt.__version__} could not deserialise {path}: it was built by another TensorRT "
                "version or GPU, or its plugins are not registered (pass plugin_library= or set "
                f"{PLUGIN_ENV}); rebuild with `ptdit-export build`"
            )
        self.context = self.engine.create_execution_context()
        names = trt_dtype_names(trt)
        self.inputs, self.outputs, self._profiles = {}, {}, {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(name))
            spec = TensorSpec(name, names[self.engine.get_tensor_dtype(name)], shape)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs[name] = spec
                lo, opt, hi = self.engine.get_tensor_profile_shape(name, 0)
                self._profiles[name] = (tuple(lo), tuple(opt), tuple(hi))
            else:
                self.outputs[name] = spec
        self.stream = self.cuda("cudaStreamCreate")
        self.use_cuda_graph = cuda_graph
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._uploaded: dict[str, np.ndarray] = {}  # constant inputs: the array last copied in
        self._graphs: dict[tuple, object] = {}  # input shapes -> cudaGraphExec_t
        log.debug("loaded %s: %s", path, self.describe())

    def profile(self, name: str):
        return self._profiles.get(name)

    # ------------------------------------------------------------ buffers
    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if nbytes > size:
            if ptr:
                self.cuda("cudaFree", ptr)
            self._drop_graphs()
            self._uploaded.pop(name, None)
            ptr = int(self.cuda("cudaMalloc", max(nbytes, 256)))
            self._buffers[name] = (ptr, nbytes)
            self.context.set_tensor_address(name, ptr)
        return ptr

    def _drop_graphs(self) -> None:
        for graph in self._graphs.values():
            self.cuda("cudaGraphExecDestroy", graph)
        self._graphs.clear()

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        lo, _, hi = self._profiles[name]
        if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            raise ValueError(
                f"input {name!r} shape {shape} is outside the engine's profile min {lo} .. max {hi}; "
                "rebuild with wider --min/--max sizes or pick a size inside"
            )

    # ---------------------------------------------------------------- run
    def run(self, feeds: Mapping[str, np.ndarray], constant: Iterable[str] = ()) -> dict[str, np.ndarray]:
        rt = self.cuda.rt
        raw = dict(feeds)
        prepared = self.prepare_feeds(raw)
        constant = set(constant)
        for name, arr in prepared.items():
            self._check_profile(name, arr.shape)
            if self._shapes.get(name) != arr.shape:
                if not self.context.set_input_shape(name, arr.shape):
                    raise RuntimeError(f"TensorRT rejected shape {arr.shape} for input {name!r}")
                self._shapes[name] = arr.shape
                self._uploaded.pop(name, None)
        for name, arr in prepared.items():
            ptr = self._buffer(name, arr.nbytes)
            if name in constant and self._uploaded.get(name) is raw[name]:
                continue
            self.cuda(
                "cudaMemcpyAsync",
                ptr,
                arr.ctypes.data,
                arr.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                self.stream,
            )
            self._uploaded[name] = raw[name]
        results = {}
        for name, spec in self.outputs.items():
            shape = tuple(self.context.get_tensor_shape(name))
            results[name] = np.empty(shape, dtype=host_dtype(spec.dtype))
            self._buffer(name, results[name].nbytes)
        self._execute(tuple(self._shapes[n] for n in self.inputs))
        for name, arr in results.items():
            self.cuda(
                "cudaMemcpyAsync",
                arr.ctypes.data,
                self._buffers[name][0],
                arr.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                self.stream,
            )
        self.cuda("cudaStreamSynchronize", self.stream)
        return {n: self.finish_output(n, a) for n, a in results.items()}

    def _execute(self, key: tuple) -> None:
        rt, stream = self.cuda.rt, self.stream
        if not self.use_cuda_graph:
            if not self.context.execute_async_v3(int(stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
            return
        graph_exec = self._graphs.get(key)
        if graph_exec is None:
            if not self.context.execute_async_v3(int(stream)):  # lets TensorRT finish lazy set-up
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
            self.cuda("cudaStreamSynchronize", stream)
            self.cuda("cudaStreamBeginCapture", stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal)
            self.context.execute_async_v3(int(stream))
            graph = self.cuda("cudaStreamEndCapture", stream)
            self._graphs[key] = self.cuda("cudaGraphInstantiate", graph, 0)
            self.cuda("cudaGraphDestroy", graph)
            return  # the plain run above already produced this call's outputs
        self.cuda("cudaGraphLaunch", graph_exec, stream)

    def close(self) -> None:
        if getattr(self, "_buffers", None) is None:
            return
        self._drop_graphs()
        for ptr, _ in self._buffers.values():
            self.cuda("cudaFree", ptr)
        self._buffers = None
        self.cuda("cudaStreamDestroy", self.stream)
        self.context = self.engine = None
