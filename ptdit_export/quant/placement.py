"""Which nodes get quantized: the projections and MLP linears of the transformer blocks.

Quantized: every MatMul/Gemm whose weight is a constant of a `transformer_blocks.*` Linear (the
attention projections q/k/v/out of all four attentions, the proxy and visual linears, the MLP).
Kept as in the float graph: the patch embedding, the timestep and caption embedders, the adaLN
modulation (its table and `adaln_single.linear`), the final projection, LayerNorm, softmax,
gates, the residual stream, and the attention itself (Q@K^T and P@V have no constant operand;
the plugin graph's ptdit:: attention nodes stay fp16).
"""

from __future__ import annotations

import re
from typing import Any

BLOCK_LINEAR = re.compile(r"transformer_blocks\.\d+\.")
SCOPE_KEYS = ("pkg.torch.onnx.name_scopes", "namespace")


def _scope(node: Any) -> str:
    return " ".join(p.value for p in node.metadata_props if p.key in SCOPE_KEYS)


def constant_weight(graph: Any, node: Any) -> tuple[str, bool] | None:
    """(initializer name, transposed) of a MatMul/Gemm's weight operand, or None if it is computed
    at run time. transposed: the initializer is [N, K] (Gemm transB=1 or a Transpose in between)."""
    inits = {i.name for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    name = node.input[1]
    transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute)
    producer = producers.get(name)
    if producer is not None and producer.op_type == "Transpose" and producer.input[0] in inits:
        return producer.input[0], not transposed
    return (name, transposed) if name in inits else None


def quantized_nodes(model: Any) -> list[str]:
    """Names of the nodes to quantize, in graph order."""
    graph = model.graph
    picked = []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        weight = constant_weight(graph, node)
        if weight is None:
            continue
        if BLOCK_LINEAR.search(_scope(node)) or BLOCK_LINEAR.match(weight[0]):
            picked.append(node.name)
    return picked
