"""Custom-op function bodies and the fused-shift formulation against the op references."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from ptdit_export import ops
from ptdit_export.export import plugin_ops
from ptdit_export.model import PTDiT, load_config
from ptdit_export.model.attention import use_backend
from tests.conftest import assert_close, randomise


def one_node_session(op: str, inputs: list[str], attrs: dict) -> ort.InferenceSession:
    dims = {"grid": ["three"]}
    ins = [
        helper.make_tensor_value_info(
            n, TensorProto.INT32 if n == "grid" else TensorProto.FLOAT, dims.get(n, ["r", "n", "c"])
        )
        for n in inputs
    ]
    node = helper.make_node(op, inputs, ["y"], domain=ops.DOMAIN, **attrs)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["r", "s", "c"])
    graph = helper.make_graph([node], "one", ins, [out])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(ops.DOMAIN, 1)], ir_version=10
    )
    plugin_ops.add_functions(model)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


CASES = [  # window, grid (wraps and regions on every axis that shifts), proxy groups
    ((1, 4, 4), (1, 8, 12), (1, 2, 2)),
    ((2, 2, 4), (4, 4, 8), (1, 1, 2)),
    ((1, 3, 2), (1, 6, 4), (1, 1, 1)),
    ((1, 1, 4), (1, 3, 8), (1, 1, 2)),
]


@pytest.mark.parametrize("window,grid,groups", CASES)
def test_function_bodies_equal_the_op_references(window, grid, groups):
    g = torch.Generator().manual_seed(0)
    b, heads, dh = 2, 2, 8
    n = int(np.prod(window))
    r = b * int(np.prod(np.array(grid) // np.array(window)))
    q, k, v = (torch.randn(r, n, heads * dh, generator=g) for _ in range(3))
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()}
    scale = dh**-0.5

    wa = one_node_session(ops.WINDOW_ATTENTION, ["q", "k", "v"], dict(num_heads=heads, scale=scale))
    assert_close(wa.run(None, feeds)[0], ops.window_attention_ref(q, k, v, heads), 1e-5, "window attention")

    swa = one_node_session(
        ops.SHIFTED_WINDOW_ATTENTION,
        ["q", "k", "v", "grid"],
        dict(num_heads=heads, scale=scale, window=list(window)),
    )
    got = swa.run(None, feeds | {"grid": np.array(grid, np.int32)})[0]
    assert_close(
        got, ops.shifted_window_attention_ref(q, k, v, grid, heads, window), 1e-5, "shifted attention"
    )

    pp = one_node_session(ops.PROXY_POOL, ["x"], dict(window=list(window), groups=list(groups)))
    assert_close(pp.run(None, {"x": q.numpy()})[0], ops.proxy_pool_ref(q, window, groups), 1e-6, "proxy pool")


def test_plugin_backend_in_eager_mode_equals_the_reference_model():
    """The fused-shift formulation (modulation gathered per token, attention rolling itself)
    gives the release's result, also with a different timestep per sample."""
    cfg = load_config("tiny").replace(compress_ratios=(1, 4, 4), proxy_compress_ratios=(1, 2, 2))
    model = randomise(PTDiT(cfg)).eval()
    g = torch.Generator().manual_seed(1)
    args = (
        torch.randn(3, 4, 1, 16, 24, generator=g),
        torch.tensor([5.0, 500.0, 900.0]),
        torch.randn(3, 6, 64, generator=g),
    )
    with torch.no_grad():
        want = model(*args)
        with use_backend("onnx-plugin"):
            got = model(*args)
    assert_close(got, want, 1e-5, "onnx-plugin backend, eager")


def test_strip_functions_keeps_custom_nodes_without_bodies():
    model = helper.make_model(
        helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid(ops.DOMAIN, 1)]
    )
    model.graph.node.append(helper.make_node(ops.WINDOW_ATTENTION, ["q", "k", "v"], ["y"], domain=ops.DOMAIN))
    plugin_ops.add_functions(model)
    assert [f.name for f in model.functions] == [ops.WINDOW_ATTENTION]
    stripped = plugin_ops.strip_functions(model)
    assert not stripped.functions and stripped.graph.node[0].op_type == ops.WINDOW_ATTENTION
    assert model.functions  # the original keeps its bodies
