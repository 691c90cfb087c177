"""Activation ranges: replay the sampler's feeds through the float graph, largest |x| per tensor."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def activation_amax(
    onnx_path: Path, feeds: list[dict[str, np.ndarray]], tensors: list[str]
) -> dict[str, float]:
    """max |tensor| over all FEEDS for each name in TENSORS (outputs of top-level nodes)."""
    import onnx
    import onnxruntime as ort
    from tqdm import tqdm

    model = onnx.load(str(onnx_path))
    wanted = sorted(set(tensors))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in wanted if t not in have)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in session.get_inputs()}
    np_types = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(int64)": np.int64}
    amax = dict.fromkeys(wanted, 0.0)
    for feed in tqdm(feeds, desc="activation ranges", unit="feed", leave=False):
        cast = {k: v.astype(np_types.get(types[k], v.dtype)) for k, v in feed.items() if k in types}
        for name, value in zip(wanted, session.run(wanted, cast)):
            amax[name] = max(amax[name], float(np.abs(value.astype(np.float32)).max()))
    log.info("activation ranges of %d tensors over %d feeds", len(wanted), len(feeds))
    return amax
