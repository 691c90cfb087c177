"""TensorRT backend (TensorRT 10/11 Python API + cuda-python), imported lazily.

Registers the PT-DiT plugins first, deserialises DIR/transformer/engine.plan, keeps one device buffer per I/O tensor (grown
when a larger shape arrives), sets input shapes, copies in, runs `execute_async_v3` on its
own stream and copies out. With `cuda_graph=True` each distinct set of input shapes is
captured once into a CUDA graph (after one plain run, which lets TensorRT finish its lazy
set-up) and replayed afterwards; growing a buffer drops the captured graphs.

Plugins: `ptdit-export build` copies libptdit_plugins.so into the engine folder and records
its path and sha256 in manifest.json under "plugin_library". The engine is not version
compatible, so TensorRT does not embed the library (IBuilderConfig::setPluginsToSerialize only
applies to version-compatible engines): this backend registers the folder's library itself,
after checking its hash (the trust model, docs/runtime.md), and never registers the creators a
second time when they already are (an earlier load, or a plain dlopen of the library, which
registers with the loaded TensorRT). A library given explicitly (argument or
$PTDIT_PLUGIN_LIBRARY) is the caller's choice and is used instead, unchecked. Host code inside
an engine (version-compatible plans) runs only with trust_plugins=True.

Not run in this project: no machine here has TensorRT (see docs/runtime.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ptdit_runtime.engines.base import Engine, TensorSpec

log = logging.getLogger(__name__)

PLUGIN_ENV = "PTDIT_PLUGIN_LIBRARY"  # path of libptdit_plugins.so (the same variable the build reads)
MANIFEST = "manifest.json"
PLUGIN_RECORD = "plugin_library"  # manifest key: {"path": <relative to the folder>, "sha256": <hex>}
# (name, version) of the library's creators, namespace "" (ptdit_export/ops/ops.json; a test keeps them equal)
PLUGIN_CREATORS = (
    ("PTDiTProxyPool", "1"),
    ("PTDiTWindowAttention", "1"),
    ("PTDiTShiftedWindowAttention", "1"),
)
TRUST_HINT = "pass trust_plugins=True only if you trust this folder and its native code"


class PluginTrustError(ValueError):
    """The engine folder's plugin library is not the one its manifest records."""


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_plugin_library(folder: str | Path, trust_plugins: bool = False) -> Path | None:
    """The plugin library FOLDER's manifest records, if its sha256 matches (or the caller trusts
    the folder); None when the manifest records none. Needs no TensorRT."""
    folder = Path(folder)
    for base in (folder.parent, folder):  # the folder's root manifest, else the component's own
        manifest = base / MANIFEST
        if manifest.is_file():
            break
    else:
        return None
    try:
        record = json.loads(manifest.read_text()).get(PLUGIN_RECORD)
    except (ValueError, AttributeError) as err:
        raise ValueError(
            f"{manifest} is not a JSON object ({err}); rebuild the folder with `ptdit-export build`"
        ) from None
    if record is None:
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("path", "sha256")):
        raise PluginTrustError(
            f'{manifest}: "{PLUGIN_RECORD}" must be {{"path": ..., "sha256": ...}}; rebuild the folder with '
            "`ptdit-export build --backend tensorrt`"
        )
    relative = Path(record["path"])
    path = base / relative
    if (relative.is_absolute() or ".." in relative.parts) and not trust_plugins:
        raise PluginTrustError(
            f"{manifest} points at a plugin library outside its folder ({record['path']}); rebuild the folder with "
            f"`ptdit-export build --backend tensorrt`, or {TRUST_HINT}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}, the plugin library {manifest} records, is missing; rebuild the folder with "
            "`ptdit-export build --backend tensorrt` (or pass plugin_library=<libptdit_plugins.so>)"
        )
    if trust_plugins:
        log.info("trusting %s without checking its sha256 (trust_plugins=True)", path)
        return path
    actual = sha256_file(path)
    if actual != record["sha256"].lower():
        raise PluginTrustError(
            f"{path} does not match the sha256 in {manifest} (file {actual[:16]}..., manifest "
            f"{record['sha256'][:16]}...): it changed after the build. Rebuild the folder with `ptdit-export build "
            f"--backend tensorrt`, or {TRUST_HINT}"
        )
    return path


def plugins_registered(registry) -> bool:
    """Are all PT-DiT creators in TensorRT's registry already (loaded before, or registered by a
    plain dlopen of the library)?"""
    return all(registry.get_creator(name, version, "") is not None for name, version in PLUGIN_CREATORS)


def register_plugins(trt, logger, library: Path | None) -> None:
    """Register the PT-DiT creators from LIBRARY unless they already are (never twice: TensorRT's
    load_library fails on creators it already holds)."""
    trt.init_libnvinfer_plugins(logger, "")
    registry = trt.get_plugin_registry()
    if plugins_registered(registry):
        log.debug("PT-DiT plugins already registered; not loading %s", library)
        return
    if library is not None and registry.load_library(str(library)) is None:
        raise RuntimeError(
            f"TensorRT could not load the plugin library {library} (see the TensorRT log above)"
        )


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
        trust_plugins: bool = False,
    ):
        """plugin_library: the caller's libptdit_plugins.so (else $PTDIT_PLUGIN_LIBRARY, else the
        folder's copy checked against the manifest). trust_plugins: load the folder's library even
        if its hash does not match, and let the engine run host code it carries."""
        path = Path(plan)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; build it with `ptdit-export build --backend tensorrt`"
            )
        # the trust check first: it needs no TensorRT and nothing native has run yet
        library = plugin_library_path(plugin_library) or folder_plugin_library(path.parent, trust_plugins)
        trt = import_tensorrt()
        self.cuda = _Cuda()
        self.cuda("cudaSetDevice", device_id)
        self._logger = trt.Logger(trt.Logger.WARNING)
        register_plugins(trt, self._logger, library)
        self._runtime = trt.Runtime(self._logger)
        if trust_plugins:
            self._runtime.engine_host_code_allowed = True  # plugin code serialised into the plan
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT {trt.__version__} could not deserialise {path}: it was built by another TensorRT "
                "version or GPU, or its plugins are not registered (pass plugin_library= or set "
                f"{PLUGIN_ENV}), or it carries plugin code (trust_plugins=True); rebuild with `ptdit-export build`"
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
