"""Ascend backend: DIR/transformer/model.om (an ATC offline model) on an Ascend NPU, imported lazily.

Runs through ais_bench's `InferSession` (Ascend's ais_bench + aclruntime wheels) when it imports,
else through CANN's pyACL module `acl`; neither is on PyPI. Everything about the model comes
from DIR/transformer/ascend.json, written by `ptdit-export build --backend ascend`: input and
output names, dtypes and shapes (-1 where ATC compiled --dynamic_dims), and the exact shapes
ATC compiled. An .om takes only those shapes, so `run` refuses any other with the list.

With --dynamic_dims, ATC adds an input named `ascend_mbatch_shape_data`; pyACL fills it from
the concatenation of every input's dims in model input order (aclmdlSetInputDynamicDims), and
ais_bench's "dymdims" mode does the same from the arrays' shapes. Output buffers are sized for
the largest profile: the first prod(shape) elements are this call's output, whose shape is
hidden_states' with the output's own channel count (engine-folder contract).

Not run in this project: no machine here has an Ascend NPU or CANN (see docs/ascend.md).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ptdit_runtime.engines.base import Engine, TensorSpec
from ptdit_runtime.engines.dtypes import float32_from_bfloat16_bits

log = logging.getLogger(__name__)

SETTINGS = "ascend.json"
OM = "model.om"
DYNAMIC_INPUT = "ascend_mbatch_shape_data"  # the input ATC adds for --dynamic_dims
SESSIONS = ("ais_bench", "acl")
MISSING = (
    "the ascend backend needs ais_bench (`from ais_bench.infer.interface import InferSession`: Ascend's "
    "ais_bench and aclruntime wheels) or CANN's pyACL module `acl` (`source <CANN>/set_env.sh`), on a "
    "machine with an Ascend NPU; neither imports here and neither is on PyPI. Without them, run "
    "model.onnx with backend='onnxruntime' (onnxruntime-cann offers the CANN execution provider)"
)

# aclDataType (acl_base.h) -> NumPy dtype names; bfloat16 travels as uint16 bits
ACL_DTYPES = {
    0: "float32",
    1: "float16",
    2: "int8",
    3: "int32",
    4: "uint8",
    6: "int16",
    7: "uint16",
    8: "uint32",
    9: "int64",
    10: "uint64",
    11: "float64",
    12: "bool",
    27: "bfloat16",
}
ACL_MEM_MALLOC_HUGE_FIRST = 0
ACL_MEMCPY_HOST_TO_DEVICE = 1
ACL_MEMCPY_DEVICE_TO_HOST = 2
ACL_ERROR_REPEAT_INITIALIZE = 100002


def available_session() -> str:
    """'ais_bench' or 'acl', whichever imports first; RuntimeError naming both otherwise."""
    try:
        from ais_bench.infer.interface import InferSession  # noqa: F401

        return "ais_bench"
    except ImportError:
        pass
    try:
        import acl  # noqa: F401

        return "acl"
    except ImportError as err:
        raise RuntimeError(MISSING) from err


def match_profile(
    shapes: Mapping[str, tuple[int, ...]], profiles: Sequence[Mapping[str, Sequence[int]]]
) -> int:
    """Index of the compiled profile these input shapes are, or -1."""
    for i, profile in enumerate(profiles):
        if all(tuple(profile[name]) == tuple(shape) for name, shape in shapes.items()):
            return i
    return -1


def dynamic_dims(order: Sequence[str], shapes: Mapping[str, tuple[int, ...]]) -> list[int]:
    """aclmdlSetInputDynamicDims' dims: every input's dims, concatenated in model input order."""
    return [int(d) for name in order for d in shapes[name]]


def output_shape(spec: tuple[int | None, ...], hidden_states: tuple[int, ...]) -> tuple[int, ...]:
    """An output's shape: its fixed dims, hidden_states' dims where ATC left it dynamic."""
    if len(spec) != len(hidden_states):
        raise ValueError(f"output rank {len(spec)} differs from hidden_states rank {len(hidden_states)}")
    return tuple(h if d is None else d for d, h in zip(spec, hidden_states))


class OmEngine(Engine):
    backend = "ascend"

    def __init__(self, component_dir: str | Path, device_id: int = 0, session: str | None = None):
        """component_dir: the transformer folder (or its model.om); session: 'ais_bench' | 'acl' |
        None (the first that imports)."""
        path = Path(component_dir)
        folder = path.parent if path.suffix == ".om" else path
        settings = folder / SETTINGS
        if not settings.is_file():
            raise FileNotFoundError(
                f"{settings} is missing: build the folder with `ptdit-export build --backend ascend`"
            )
        info = json.loads(settings.read_text())
        self.om = folder / OM
        if not self.om.is_file():
            raise FileNotFoundError(
                f"{self.om} does not exist: ATC has not run for this folder. On a machine with CANN run "
                f"`sh {folder / info['atc']['script']}` (see docs/ascend.md)"
            )

        def spec(t: dict) -> TensorSpec:
            return TensorSpec(t["name"], t["dtype"], tuple(None if d < 0 else int(d) for d in t["shape"]))

        self.inputs = {t["name"]: spec(t) for t in info["inputs"]}
        self.outputs = {t["name"]: spec(t) for t in info["outputs"]}
        self._order = list(self.inputs)
        self._profiles = [{n: tuple(s) for n, s in p.items()} for p in info["profiles"]]
        self._dynamic = info["atc"]["dynamic_dims"] is not None
        kind = session or available_session()
        if kind not in SESSIONS:
            raise ValueError(f"session {kind!r} is not one of {', '.join(SESSIONS)}")
        self.session_kind = kind
        self._session = _AisBench(self.om, device_id) if kind == "ais_bench" else _Acl(self.om, device_id)
        log.debug("loaded %s with %s: %s", self.om, kind, self.describe())

    def profile(self, name: str):
        """Elementwise min / first / max over the compiled shapes (run() checks the exact set)."""
        shapes = [p[name] for p in self._profiles]
        return tuple(map(min, zip(*shapes))), shapes[0], tuple(map(max, zip(*shapes)))

    def run(self, feeds: Mapping[str, np.ndarray], constant: Iterable[str] = ()) -> dict[str, np.ndarray]:
        prepared = self.prepare_feeds(feeds)
        shapes = {n: tuple(a.shape) for n, a in prepared.items()}
        if match_profile(shapes, self._profiles) < 0:
            compiled = "; ".join(str(p["hidden_states"]) for p in self._profiles)
            raise ValueError(
                f"input shapes {shapes} are not among the shapes ATC compiled into {self.om} "
                f"(hidden_states: {compiled}); rebuild with --dynamic-dims listing this size"
            )
        sizes = {n: output_shape(s.shape, shapes["hidden_states"]) for n, s in self.outputs.items()}
        raw = self._session.run(
            [prepared[n] for n in self._order],
            dynamic_dims(self._order, shapes) if self._dynamic else None,
            [math.prod(s) for s in sizes.values()],
        )
        out = {}
        for (name, shape), arr in zip(sizes.items(), raw):
            flat = np.asarray(arr).reshape(-1)
            if flat.size < math.prod(shape):
                raise RuntimeError(f"{self.om} returned {flat.size} values for {name} {shape}")
            out[name] = _as_float32(flat[: math.prod(shape)].reshape(shape))
        return out

    def close(self) -> None:
        if getattr(self, "_session", None) is not None:
            self._session.close()
            self._session = None


def _as_float32(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    if getattr(arr.dtype, "name", "") == "bfloat16":  # ml_dtypes arrays from aclruntime
        return arr.astype(np.float32)
    return arr


class _AisBench:
    """ais_bench.infer.interface.InferSession: infer(list of arrays, mode) -> list of arrays."""

    def __init__(self, om: Path, device_id: int):
        from ais_bench.infer.interface import InferSession

        self.session = InferSession(device_id, str(om))

    def run(self, arrays: list[np.ndarray], dims: list[int] | None, sizes: list[int]) -> list[np.ndarray]:
        return self.session.infer(arrays, mode="dymdims" if dims is not None else "static")

    def close(self) -> None:
        self.session.free_resource()


class _Acl:
    """CANN pyACL: load the model, one device buffer per input/output, execute synchronously."""

    def __init__(self, om: Path, device_id: int):
        import acl

        self.acl, self.device_id = acl, device_id
        ret = acl.init()
        if ret not in (0, ACL_ERROR_REPEAT_INITIALIZE):
            raise RuntimeError(f"acl.init failed with ACL error {ret}")
        self._check("acl.rt.set_device", acl.rt.set_device(device_id))
        self.context = self._value("acl.rt.create_context", acl.rt.create_context(device_id))
        self.model_id = self._value("acl.mdl.load_from_file", acl.mdl.load_from_file(str(om)))
        self.desc = acl.mdl.create_desc()
        self._check("acl.mdl.get_desc", acl.mdl.get_desc(self.desc, self.model_id))
        n_in, n_out = acl.mdl.get_num_inputs(self.desc), acl.mdl.get_num_outputs(self.desc)
        in_sizes = [acl.mdl.get_input_size_by_index(self.desc, i) for i in range(n_in)]
        out_sizes = [acl.mdl.get_output_size_by_index(self.desc, i) for i in range(n_out)]
        self.input_names = [acl.mdl.get_input_name_by_index(self.desc, i) for i in range(n_in)]
        self.in_dtypes = [ACL_DTYPES.get(acl.mdl.get_input_data_type(self.desc, i)) for i in range(n_in)]
        self.out_dtypes = [ACL_DTYPES[acl.mdl.get_output_data_type(self.desc, i)] for i in range(n_out)]
        self.inputs, self.input_set = self._dataset(in_sizes)
        self.outputs, self.output_set = self._dataset(out_sizes)
        self.dynamic_index = (
            self._value(
                "acl.mdl.get_input_index_by_name", acl.mdl.get_input_index_by_name(self.desc, DYNAMIC_INPUT)
            )
            if DYNAMIC_INPUT in self.input_names
            else None
        )

    def _check(self, what: str, ret: int) -> None:
        if ret != 0:
            raise RuntimeError(f"{what} failed with ACL error {ret}")

    def _value(self, what: str, result):
        value, ret = result
        self._check(what, ret)
        return value

    def _dataset(self, sizes: list[int]):
        acl = self.acl
        dataset = acl.mdl.create_dataset()
        buffers = []
        for size in sizes:
            ptr = self._value("acl.rt.malloc", acl.rt.malloc(max(size, 1), ACL_MEM_MALLOC_HUGE_FIRST))
            buf = acl.create_data_buffer(ptr, size)
            self._value("acl.mdl.add_dataset_buffer", acl.mdl.add_dataset_buffer(dataset, buf))
            buffers.append((ptr, size, buf))
        return buffers, dataset

    def run(self, arrays: list[np.ndarray], dims: list[int] | None, sizes: list[int]) -> list[np.ndarray]:
        acl = self.acl
        self._check("acl.rt.set_context", acl.rt.set_context(self.context))
        real = [i for i, n in enumerate(self.input_names) if n != DYNAMIC_INPUT]
        if len(real) != len(arrays):
            raise RuntimeError(f"the model has inputs {self.input_names}; got {len(arrays)} arrays")
        for i, arr in zip(real, arrays):
            ptr, size, _ = self.inputs[i]
            want = self.in_dtypes[i]
            if want not in (None, "bfloat16") and arr.dtype != want:  # e.g. an int32 mask input
                arr = np.ascontiguousarray(arr.astype(want))
            if arr.nbytes > size:
                raise ValueError(
                    f"input {self.input_names[i]} needs {arr.nbytes} bytes; the model takes {size}"
                )
            self._check(
                "acl.rt.memcpy",
                acl.rt.memcpy(ptr, size, arr.ctypes.data, arr.nbytes, ACL_MEMCPY_HOST_TO_DEVICE),
            )
        if dims is not None:
            if self.dynamic_index is None:
                raise RuntimeError(
                    f"the model has no {DYNAMIC_INPUT} input: it was not built with --dynamic_dims"
                )
            current = {"name": "", "dimCount": len(dims), "dims": dims}
            self._check(
                "acl.mdl.set_input_dynamic_dims",
                acl.mdl.set_input_dynamic_dims(self.model_id, self.input_set, self.dynamic_index, current),
            )
        self._check("acl.mdl.execute", acl.mdl.execute(self.model_id, self.input_set, self.output_set))
        out = []
        for (ptr, size, _), dtype, count in zip(self.outputs, self.out_dtypes, sizes):
            host = np.empty(count, dtype=np.uint16 if dtype == "bfloat16" else dtype)
            if host.nbytes > size:
                raise RuntimeError(f"an output needs {host.nbytes} bytes; the model's buffer has {size}")
            self._check(
                "acl.rt.memcpy",
                acl.rt.memcpy(host.ctypes.data, host.nbytes, ptr, host.nbytes, ACL_MEMCPY_DEVICE_TO_HOST),
            )
            out.append(float32_from_bfloat16_bits(host) if dtype == "bfloat16" else host)
        return out

    def close(self) -> None:
        acl = self.acl
        for buffers, dataset in ((self.inputs, self.input_set), (self.outputs, self.output_set)):
            for ptr, _, buf in buffers:
                acl.destroy_data_buffer(buf)
                acl.rt.free(ptr)
            acl.mdl.destroy_dataset(dataset)
        acl.mdl.unload(self.model_id)
        acl.mdl.destroy_desc(self.desc)
        acl.rt.destroy_context(self.context)
        acl.rt.reset_device(self.device_id)
