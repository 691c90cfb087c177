"""Trace one block, stamp out the rest: the transformer graph of an L-block PT-DiT from the
trace of a one-block model.

The L blocks of a PT-DiT are one graph with L sets of weights, and tracing (torch.export,
decomposition, translation, the optimiser) costs per traced operator. So the exporter traces a
copy of the model with only block 0, its input and output marked by `ptdit.stitch::BlockEdge`
nodes and its parameters held as graph inputs (the optimiser cannot fold them), then copies the
block's nodes L times in ONNX, chaining each copy's output into the next one's input, and binds
every block's own weights. Nodes of block 0 that depend on neither its input nor its weights
(shape arithmetic, the modulation rows' reshape) compute the same value for every block and are
kept once, as the optimiser's common-subexpression pass would.

Weights are bound lazily (name -> shape, dtype, a function making the array), so a 1.1B model is
converted to the graph's precision and written one tensor at a time (`write_model`), and chains
of weight-only Transpose / Cast / Reshape / Unsqueeze / Squeeze nodes are folded in NumPy.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import torch

log = logging.getLogger(__name__)

EDGE_DOMAIN, EDGE_OP = "ptdit.stitch", "BlockEdge"
BLOCK0 = "transformer_blocks.0."


class StitchError(RuntimeError):
    """The one-block trace does not have the shape stamping needs (the exporter then traces all)."""


@dataclasses.dataclass
class Weight:
    """One initializer to be: its shape and dtype, and how to make it (only when written).
    bfloat16 (no NumPy dtype) travels as its uint16 bit patterns with onnx_type BFLOAT16."""

    shape: tuple[int, ...]
    dtype: np.dtype
    make: Callable[[], np.ndarray]
    onnx_type: int | None = None  # None: from dtype

    def tensor_type(self) -> int:
        return self.onnx_type or onnx.helper.np_dtype_to_tensor_dtype(self.dtype)


# ----------------------------------------------------------------- 1. trace one block
def _edge(x: torch.Tensor) -> torch.Tensor:
    if not torch.onnx.is_in_onnx_export():
        return x
    return torch.onnx.ops.symbolic(
        f"{EDGE_DOMAIN}::{EDGE_OP}", [x], {}, dtype=x.dtype, shape=x.shape, version=1
    )


@contextlib.contextmanager
def _marked(block: torch.nn.Module) -> Iterator[None]:
    """BlockEdge nodes on the residual stream into and out of BLOCK while exporting."""
    pre = block.register_forward_pre_hook(lambda _m, args: (_edge(args[0]), *args[1:]))
    post = block.register_forward_hook(lambda _m, _args, out: _edge(out))
    try:
        yield
    finally:
        pre.remove()
        post.remove()


def one_block_model(model: torch.nn.Module) -> torch.nn.Module:
    """A PT-DiT with MODEL's configuration, embeddings, output layer and block 0 only (shared
    tensors, no copy)."""
    cfg = dataclasses.replace(model.config, num_layers=1)
    with torch.device("meta"):
        one = type(model)(cfg)
    state = model.state_dict()
    keep = {k: v for k, v in state.items() if not k.startswith("transformer_blocks.") or k.startswith(BLOCK0)}
    one.load_state_dict(keep, assign=True)
    return one.eval()


def trace_one_block(one: torch.nn.Module, trace: Callable[..., object]) -> onnx.ModelProto:
    """The optimised ONNX graph of the one-block model ONE with every parameter a graph input
    (no weights inside: the optimiser cannot fold them, and the trace can be cached);
    TRACE(one, optimize=False) returns torch.onnx's program for it."""
    with _marked(one.transformer_blocks[0]):
        program = trace(one, optimize=False)
    return weightless(program, set(one.state_dict()))


def weightless(program, params: set[str]) -> onnx.ModelProto:
    """A torch.onnx program (exported with optimize=False) with the initializers named in PARAMS
    turned into graph inputs, then optimised: the structure without the weights."""
    graph = program.model.graph
    for name in [n for n in graph.initializers if n in params]:
        value = graph.initializers.pop(name)
        value.const_value = None
        graph.inputs.append(value)
    program.optimize()
    return program.model_proto


# ----------------------------------------------------------------- 2. stamp out L blocks
def _topological(nodes: list[onnx.NodeProto], known: set[str]) -> list[onnx.NodeProto]:
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    waiting = [sum(1 for x in set(n.input) if x and x in producer and x not in known) for n in nodes]
    users = collections.defaultdict(list)
    for i, n in enumerate(nodes):
        for x in set(n.input):
            if x and x in producer and x not in known:
                users[producer[x]].append(i)
    ready = collections.deque(i for i, w in enumerate(waiting) if w == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(nodes[i])
        for j in users[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if len(order) != len(nodes):
        raise StitchError("the stamped graph has a cycle")
    return order


def _closure(start: set[str], nodes: list[onnx.NodeProto], forward: bool, stop: int) -> set[int]:
    """Indices of nodes downstream (forward) or upstream of the values START, not through STOP."""
    if forward:
        users = collections.defaultdict(list)
        for i, n in enumerate(nodes):
            for x in n.input:
                users[x].append(i)
        seen, todo = set(), [i for v in start for i in users[v]]
        while todo:
            i = todo.pop()
            if i in seen or i == stop:
                continue
            seen.add(i)
            todo += [j for out in nodes[i].output for j in users[out]]
        return seen
    producer = {out: i for i, n in enumerate(nodes) for out in n.output}
    seen, todo = set(), [producer[v] for v in start if v in producer]
    while todo:
        i = todo.pop()
        if i in seen or i == stop:
            continue
        seen.add(i)
        todo += [producer[x] for x in nodes[i].input if x in producer]
    return seen


def stamp_blocks(proto: onnx.ModelProto, num_layers: int) -> onnx.ModelProto:
    """Copy block 0 of a one-block trace NUM_LAYERS times; block i reads graph inputs
    `transformer_blocks.i.*`. The BlockEdge markers are removed. PROTO is not changed."""
    proto = _copy(proto)
    graph = proto.graph
    nodes = list(graph.node)
    edges = [i for i, n in enumerate(nodes) if n.domain == EDGE_DOMAIN]
    if len(edges) != 2 or any(a.g.node or a.graphs for n in nodes for a in n.attribute):
        raise StitchError(f"expected 2 {EDGE_OP} nodes and no subgraphs, found {len(edges)}")
    first, last = edges  # the entry edge's output flows into the exit edge
    feeds_last = {out for i in _closure({nodes[last].input[0]}, nodes, False, -1) for out in nodes[i].output}
    if nodes[first].output[0] not in feeds_last:
        first, last = last, first
    x_pre, x_in = nodes[first].input[0], nodes[first].output[0]
    x_out, x_after = nodes[last].input[0], nodes[last].output[0]
    params = {i.name for i in graph.input if i.name.startswith(BLOCK0)}
    downstream = _closure({x_in} | params, nodes, forward=True, stop=last)
    upstream = _closure({x_out}, nodes, forward=False, stop=first)
    block = sorted(downstream & upstream)
    inside = {out for i in block for out in nodes[i].output}

    def rename(value: str, layer: int) -> str:
        if layer == 0 or not value:
            return value
        if value in inside:
            return f"{value}__{layer}"
        if value in params:
            return f"transformer_blocks.{layer}.{value[len(BLOCK0) :]}"
        return value

    in_block = set(block)
    stamped = [n for i, n in enumerate(nodes) if i not in edges and i not in in_block]
    infos = {v.name: v for v in graph.value_info}
    new_infos = list(graph.value_info)
    for layer in range(num_layers):
        for i in block:
            node = onnx.NodeProto()
            node.CopyFrom(nodes[i])
            if layer:
                node.name = f"{node.name}__{layer}"
                node.input[:] = [rename(x, layer) for x in node.input]
                node.output[:] = [rename(x, layer) for x in node.output]
                for prop in node.metadata_props:
                    prop.value = prop.value.replace("transformer_blocks.0", f"transformer_blocks.{layer}")
                for out in nodes[i].output:
                    if out in infos:
                        info = onnx.ValueInfoProto()
                        info.CopyFrom(infos[out])
                        info.name = rename(out, layer)
                        new_infos.append(info)
            # chain: block 0 reads the stream before the marker, block i the output of block i-1
            prev = x_pre if layer == 0 else rename(x_out, layer - 1)
            node.input[:] = [prev if x == x_in else x for x in node.input]
            stamped.append(node)
    final = rename(x_out, num_layers - 1)
    for node in stamped:
        node.input[:] = [final if x == x_after else (x_pre if x == x_in else x) for x in node.input]
    outputs = {o.name for o in graph.output}
    if x_after in outputs or x_in in outputs:
        raise StitchError("a block edge is a graph output")

    inputs = [i for i in graph.input if i.name not in params]
    for layer in range(num_layers):
        for i in graph.input:
            if i.name in params:
                copy = onnx.ValueInfoProto()
                copy.CopyFrom(i)
                copy.name = rename(i.name, layer) if layer else i.name
                inputs.append(copy)
    known = {i.name for i in inputs} | {t.name for t in graph.initializer}
    del graph.node[:]
    graph.node.extend(_topological(stamped, known))
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]
    graph.value_info.extend(v for v in new_infos if v.name not in (x_in, x_after))
    return proto


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


# ----------------------------------------------------------------- 3. bind and fold weights
_NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
}


def bind_weights(proto: onnx.ModelProto, state: dict[str, torch.Tensor]) -> dict[str, Weight]:
    """Turn the graph inputs named after parameters into weights from STATE, in the dtype the
    graph declares; removes those inputs. Returns name -> Weight (not yet computed)."""
    weights: dict[str, Weight] = {}
    keep = []
    for info in proto.graph.input:
        if info.name not in state:
            keep.append(info)
            continue
        elem, tensor = info.type.tensor_type.elem_type, state[info.name]
        if elem == onnx.TensorProto.BFLOAT16:

            def bits(t=tensor) -> np.ndarray:
                return t.detach().to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)

            weights[info.name] = Weight(tuple(tensor.shape), np.dtype(np.uint16), bits, elem)
            continue
        if elem not in _NP:
            raise StitchError(f"parameter {info.name}: graph dtype {elem} is not supported")
        dtype = np.dtype(_NP[elem])

        def make(t=tensor, d=dtype) -> np.ndarray:
            return t.detach().to(torch.float32).numpy().astype(d, copy=False)

        weights[info.name] = Weight(tuple(tensor.shape), dtype, make)
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    return weights


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _fold_one(node: onnx.NodeProto, x: Weight, consts: list[np.ndarray | None]) -> Weight | None:
    """NODE applied to weight X (later inputs constant): the folded Weight, or None."""
    op = node.op_type
    if op == "Transpose":
        perm = _attr(node, "perm") or list(range(len(x.shape)))[::-1]
        shape = tuple(x.shape[p] for p in perm)
        return Weight(shape, x.dtype, lambda: np.ascontiguousarray(x.make().transpose(perm)), x.onnx_type)
    if op == "Cast":
        if _attr(node, "to") not in _NP or x.onnx_type:  # bfloat16 bits are not cast in NumPy
            return None
        dtype = np.dtype(_NP[_attr(node, "to")])
        return Weight(x.shape, dtype, lambda: x.make().astype(dtype))
    if op in ("Reshape", "Unsqueeze", "Squeeze") and all(c is not None for c in consts):
        probe = np.empty(x.shape, dtype=np.uint8)
        if op == "Reshape":
            target = [
                s if s != 0 or _attr(node, "allowzero", 0) else x.shape[i] for i, s in enumerate(consts[0])
            ]
            probe = probe.reshape(target)
        elif op == "Unsqueeze":
            probe = np.expand_dims(probe, tuple(int(a) for a in consts[0]))
        else:
            probe = np.squeeze(probe, tuple(int(a) for a in consts[0])) if consts else np.squeeze(probe)
        shape = probe.shape
        return Weight(shape, x.dtype, lambda: x.make().reshape(shape), x.onnx_type)
    return None


def fold_weights(proto: onnx.ModelProto, weights: dict[str, Weight]) -> None:
    """Fold Transpose / Cast / Reshape / Unsqueeze / Squeeze nodes whose data input is a bound
    weight (and other inputs constant initializers) into new weights; drops unused weights."""
    graph = proto.graph
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        data = node.input[0] if node.input else ""
        rest = [consts.get(x) for x in node.input[1:] if x]
        folded = (
            _fold_one(node, weights[data], rest)
            if data in weights and node.op_type in ("Transpose", "Cast", "Reshape", "Unsqueeze", "Squeeze")
            else None
        )
        if folded is None:
            kept.append(node)
        else:
            weights[node.output[0]] = folded
    del graph.node[:]
    graph.node.extend(kept)
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    for name in [w for w in weights if w not in used]:
        del weights[name]
    infos = [v for v in graph.value_info if v.name not in weights]
    del graph.value_info[:]
    graph.value_info.extend(infos)


# ----------------------------------------------------------------- 4. write
def write_model(
    proto: onnx.ModelProto, path: Path, weights: dict[str, Weight], external: bool, progress: bool = False
) -> None:
    """Save PROTO with WEIGHTS as initializers: inside the file, or streamed one tensor at a
    time into PATH.data (`location` relative to PATH), never all in memory at once."""
    from tqdm import tqdm

    from ptdit_export.export.artifacts import fsync_path

    path = Path(path)
    items = list(weights.items())
    bar = tqdm(items, desc="weights", unit="tensor", disable=not progress, leave=False)
    if not external:
        for name, w in bar:
            array = np.ascontiguousarray(w.make())
            tensor = onnx.TensorProto(name=name, dims=list(array.shape), data_type=w.tensor_type())
            tensor.raw_data = array.tobytes()
            proto.graph.initializer.append(tensor)
        onnx.save_model(proto, str(path))
        return
    data = path.with_name(path.name + ".data")
    offset = 0
    with open(data, "wb") as f:
        for name, w in bar:
            array = np.ascontiguousarray(w.make())
            pad = -offset % 64
            f.write(b"\0" * pad)
            offset += pad
            raw = array.tobytes()
            f.write(raw)
            tensor = onnx.TensorProto(name=name, dims=list(array.shape), data_type=w.tensor_type())
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(len(raw)))):
                tensor.external_data.add(key=key, value=value)
            proto.graph.initializer.append(tensor)
            offset += len(raw)
            del raw, array
        f.flush()
    fsync_path(data)
    onnx.save_model(proto, str(path))


def weight_bytes(weights: dict[str, Weight], proto: onnx.ModelProto) -> int:
    """Bytes of all initializers once written (bound weights and the trace's own constants)."""
    own = sum(len(t.raw_data) for t in proto.graph.initializer)
    return own + sum(int(np.prod(w.shape)) * w.dtype.itemsize for w in weights.values())
