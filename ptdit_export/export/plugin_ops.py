"""The plugin graph: PT-DiT's window ops as custom ONNX nodes (ops.json), with bodies.

`use_backend("onnx-plugin")` makes window attention, shifted-window attention and proxy pooling
emit `ptdit::` nodes while exporting (and compute their reference results in eager mode, so a
model under this backend still runs). `add_functions` then gives each custom op an ONNX local
function holding its standard-op decomposition: ONNX Runtime inlines it, so the plugin graph
runs anywhere; `strip_functions` makes the TensorRT-bound copy whose nodes map to plugins.
"""

from __future__ import annotations

import math

import onnx
import torch
from onnx import TensorProto, helper

from ptdit_export import ops
from ptdit_export.model.attention import math_attention, register_backend

ONNX_OPSET = 18  # the default domain inside the function bodies


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def _proxy_pool(x, window, groups):
    if not _exporting():
        return ops.proxy_pool_ref(x, window, groups)
    r, _, c = x.shape
    s = groups[1] * groups[2]
    attrs = {"window": list(window), "groups": list(groups)}
    return torch.onnx.ops.symbolic(
        f"{ops.DOMAIN}::{ops.PROXY_POOL}", [x], attrs, dtype=x.dtype, shape=(r, s, c), version=1
    )


@register_backend("onnx-plugin", pool=_proxy_pool, fuses_shift=True)
def plugin_attention(q, k, v, heads, bias=None, kind="window", geometry=None):
    """Custom nodes for the window kinds; plain ONNX maths for the global ones."""
    scale = 1.0 / math.sqrt(q.shape[-1] // heads)
    if kind == "window":
        if not _exporting():
            return ops.window_attention_ref(q, k, v, heads, scale)
        attrs = {"num_heads": heads, "scale": scale}
        return torch.onnx.ops.symbolic(
            f"{ops.DOMAIN}::{ops.WINDOW_ATTENTION}", [q, k, v], attrs, dtype=q.dtype, shape=q.shape, version=1
        )
    if kind == "shifted_window":
        grid, window = geometry
        if not _exporting():
            return ops.shifted_window_attention_ref(q, k, v, grid, heads, window, scale)
        grid_t = torch.tensor(list(grid), dtype=torch.int32, device=q.device)
        attrs = {"num_heads": heads, "scale": scale, "window": list(window)}
        return torch.onnx.ops.symbolic(
            f"{ops.DOMAIN}::{ops.SHIFTED_WINDOW_ATTENTION}",
            [q, k, v, grid_t],
            attrs,
            dtype=q.dtype,
            shape=q.shape,
            version=1,
        )
    return math_attention(q, k, v, heads, bias=bias, kind=kind)


# ------------------------------------------------------------ function bodies
class _Body:
    """A small builder for FunctionProto node lists with automatic names."""

    def __init__(self, prefix: str):
        self.nodes: list[onnx.NodeProto] = []
        self.prefix, self.count = prefix, 0

    def __call__(self, op: str, *inputs: str, **attrs) -> str:
        self.count += 1
        out = f"{self.prefix}_{self.count}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def const(self, values, dtype=TensorProto.INT64) -> str:
        vals = list(values) if isinstance(values, (list, tuple)) else [values]
        return self(
            "Constant", value=helper.make_tensor(f"{self.prefix}_c{self.count}", dtype, [len(vals)], vals)
        )

    def attr(self, name: str, kind: int) -> str:
        """A Constant holding the function attribute `name` (value_int/ints/float)."""
        field = {
            onnx.AttributeProto.INT: "value_int",
            onnx.AttributeProto.INTS: "value_ints",
            onnx.AttributeProto.FLOAT: "value_float",
        }[kind]
        self.count += 1
        out = f"{self.prefix}_{self.count}"
        node = helper.make_node("Constant", [], [out])
        node.attribute.append(onnx.AttributeProto(name=field, ref_attr_name=name, type=kind))
        self.nodes.append(node)
        return out

    def pick(self, vec: str, i: int) -> str:
        """Element i of a 1-D int64 tensor, as a [1] tensor."""
        return self("Slice", vec, self.const(i), self.const(i + 1))

    def dims(self, *parts: str | tuple[str, int]) -> str:
        """A 1-D int64 shape: each part is a 1-D tensor, or (vector, i) for its element i."""
        return self("Concat", *(self.pick(*p) if isinstance(p, tuple) else p for p in parts), axis=0)


def _heads_split(b: _Body, x: str, heads: str, perm: list[int]) -> str:
    """[R, N, H*dh] -> transposed [R, H, N, dh] (or as `perm` says), in fp32."""
    shape = b.dims(b("Slice", b("Shape", x), b.const(0), b.const(2)), heads, b.const(-1))
    return b("Transpose", b("Reshape", b("Cast", x, to=TensorProto.FLOAT), shape), perm=perm)


def _attention(b: _Body, q: str, k: str, v: str, bias: str | None, to_scores=None, from_scores=None) -> str:
    """softmax(q k^T * scale [+ bias]) v per head, in fp32; returns [R, N, H*dh] (fp32)."""
    heads = b("Unsqueeze", b.attr("num_heads", onnx.AttributeProto.INT), b.const(0))
    qh = _heads_split(b, q, heads, [0, 2, 1, 3])
    kt = _heads_split(b, k, heads, [0, 2, 3, 1])
    vh = _heads_split(b, v, heads, [0, 2, 1, 3])
    scores = b("Mul", b("MatMul", qh, kt), b.attr("scale", onnx.AttributeProto.FLOAT))  # (R, H, N, N)
    if bias is not None:
        scores = from_scores(b("Add", to_scores(scores), bias))
    out = b("Transpose", b("MatMul", b("Softmax", scores, axis=-1), vh), perm=[0, 2, 1, 3])
    return b("Reshape", out, b("Shape", q))


def window_attention_function() -> onnx.FunctionProto:
    b = _Body("wa")
    out = _attention(b, "q", "k", "v", None)
    b.nodes.append(helper.make_node("CastLike", [out, "q"], ["out"]))
    return _function(ops.WINDOW_ATTENTION, ["q", "k", "v"], b.nodes, ["num_heads", "scale"])


def proxy_pool_function() -> onnx.FunctionProto:
    b = _Body("pp")
    win = b.attr("window", onnx.AttributeProto.INTS)
    grp = b.attr("groups", onnx.AttributeProto.INTS)
    per = b("Div", win, grp)  # members per group along each axis
    xs = b("Shape", "x")
    shape = b.dims(
        (xs, 0), (win, 0), (per, 1), (grp, 1), (per, 2), (grp, 2), (xs, 2)
    )  # (R, wf, wh/gh, gh, ww/gw, gw, C)
    x = b("Transpose", b("Reshape", b("Cast", "x", to=TensorProto.FLOAT), shape), perm=[0, 1, 2, 4, 3, 5, 6])
    s = b("Mul", b.pick(grp, 1), b.pick(grp, 2))
    x = b("Reshape", x, b.dims((xs, 0), b.const(-1), s, (xs, 2)))
    mean = b("ReduceMean", x, b.const(1), keepdims=0)  # (R, S, C)
    b.nodes.append(helper.make_node("CastLike", [mean, "x"], ["proxies"]))
    return _function(ops.PROXY_POOL, ["x"], b.nodes, ["window", "groups"], outputs=["proxies"])


def _roll_windows(b: _Body, x: str, grid: str, win: str, sign: int) -> str:
    """Window-major [R, N, C] -> roll the (F, h, w) grid by sign*(window//2) -> window-major."""
    xs = b("Shape", x)
    n_win = b("Div", grid, win)  # windows per axis
    c = b.pick(xs, 2)
    split = b.dims(b.const(-1), (n_win, 0), (n_win, 1), (n_win, 2), (win, 0), (win, 1), (win, 2), c)
    g = b(
        "Transpose", b("Reshape", x, split), perm=[0, 1, 4, 2, 5, 3, 6, 7]
    )  # (B, nf, wf, nh, wh, nw, ww, C)
    g = b("Reshape", g, b.dims(b.const(-1), grid, c))  # (B, F, h, w, C)
    shift = b("Div", win, b.const([2, 2, 2]))
    for axis in range(3):
        length = b.pick(grid, axis)
        s = b.pick(shift, axis)
        # roll by -s: [s:] then [:s]; roll by +s: [L-s:] then [:L-s]
        cut = s if sign < 0 else b("Sub", length, s)
        ax = b.const(axis + 1)
        head = b("Slice", g, cut, length, ax)
        tail = b("Slice", g, b.const(0), cut, ax)
        g = b("Concat", head, tail, axis=axis + 1)
    split2 = b.dims(b.const(-1), (n_win, 0), (win, 0), (n_win, 1), (win, 1), (n_win, 2), (win, 2), c)
    g = b("Transpose", b("Reshape", g, split2), perm=[0, 1, 3, 5, 2, 4, 6, 7])
    return b("Reshape", g, xs)


def _region_bias(b: _Body, grid: str, win: str) -> str:
    """[nW, N, N] fp32 bias: -10000 between tokens of different Swin regions."""
    shift = b("Div", win, b.const([2, 2, 2]))
    labels = []
    for axis in range(3):
        length = b.pick(grid, axis)
        pos = b("Range", b("Squeeze", b.const(0)), b("Squeeze", length), b("Squeeze", b.const(1)))
        ge_w = b(
            "Cast",
            b("GreaterOrEqual", pos, b("Squeeze", b("Sub", length, b.pick(win, axis)))),
            to=TensorProto.INT64,
        )
        ge_s = b(
            "Cast",
            b("GreaterOrEqual", pos, b("Squeeze", b("Sub", length, b.pick(shift, axis)))),
            to=TensorProto.INT64,
        )
        labels.append(b("Add", ge_w, ge_s))  # 0, 1, 2 by region (an axis with s = 0 splits no window)
    lf = b("Unsqueeze", b("Mul", labels[0], b.const(9)), b.const([1, 2]))
    lh = b("Unsqueeze", b("Mul", labels[1], b.const(3)), b.const([0, 2]))
    lw = b("Unsqueeze", labels[2], b.const([0, 1]))
    lab = b("Add", b("Add", lf, lh), lw)  # (F, h, w)
    n_win = b("Div", grid, win)
    split = b.dims((n_win, 0), (win, 0), (n_win, 1), (win, 1), (n_win, 2), (win, 2))
    lab = b("Transpose", b("Reshape", lab, split), perm=[0, 2, 4, 1, 3, 5])
    lab = b("Reshape", lab, b.dims(b.const(-1), b("ReduceProd", win, keepdims=1)))  # (nW, N)
    differs = b("Not", b("Equal", b("Unsqueeze", lab, b.const(1)), b("Unsqueeze", lab, b.const(2))))
    return b("Mul", b("Cast", differs, to=TensorProto.FLOAT), b("Constant", value_float=-10000.0))


def shifted_window_attention_function() -> onnx.FunctionProto:
    b = _Body("swa")
    win = b.attr("window", onnx.AttributeProto.INTS)
    grid = b("Cast", "grid", to=TensorProto.INT64)
    q, k, v = (_roll_windows(b, t, grid, win, -1) for t in ("q", "k", "v"))
    bias = _region_bias(b, grid, win)  # (nW, N, N)
    n_win = b("ReduceProd", b("Div", grid, win), keepdims=1)

    def to_scores(s):  # (R, H, N, N) -> (B, nW, H, N, N) so the bias broadcasts per window
        return b("Reshape", s, b.dims(b.const(-1), n_win, b("Slice", b("Shape", s), b.const(1), b.const(4))))

    def from_scores(s):
        return b("Reshape", s, b.dims(b.const(-1), b("Slice", b("Shape", s), b.const(2), b.const(5))))

    bias = b("Unsqueeze", bias, b.const([0, 2]))  # (1, nW, 1, N, N)
    out = _attention(b, q, k, v, bias, to_scores, from_scores)
    out = _roll_windows(b, out, grid, win, +1)
    b.nodes.append(helper.make_node("CastLike", [out, "q"], ["out"]))
    return _function(
        ops.SHIFTED_WINDOW_ATTENTION, ["q", "k", "v", "grid"], b.nodes, ["num_heads", "scale", "window"]
    )


def _function(name, inputs, nodes, attributes, outputs=("out",)) -> onnx.FunctionProto:
    spec = ops.load_spec()[1][name]
    assert list(inputs) == list(spec.inputs) and set(attributes) == set(spec.attributes), name
    return helper.make_function(
        ops.DOMAIN,
        name,
        list(inputs),
        list(outputs),
        nodes,
        [helper.make_opsetid("", ONNX_OPSET)],
        attributes=list(attributes),
        doc_string=spec.doc,
    )


FUNCTIONS = {
    ops.PROXY_POOL: proxy_pool_function,
    ops.WINDOW_ATTENTION: window_attention_function,
    ops.SHIFTED_WINDOW_ATTENTION: shifted_window_attention_function,
}


def add_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Attach the decomposition of every ptdit op the graph uses (ONNX Runtime inlines them)."""
    used = {n.op_type for n in model.graph.node if n.domain == ops.DOMAIN}
    have = {f.name for f in model.functions if f.domain == ops.DOMAIN}
    model.functions.extend(FUNCTIONS[name]() for name in sorted(used - have))
    return model


def strip_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """The TensorRT-bound copy: ptdit nodes without bodies, so the parser maps them to plugins."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [f for f in out.functions if f.domain != ops.DOMAIN]
    del out.functions[:]
    out.functions.extend(keep)
    return out
