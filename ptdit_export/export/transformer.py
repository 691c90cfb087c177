"""Transformer -> ONNX: the plugin graph or the portable graph, fp32/fp16/bf16, dynamic shapes.

`onnx_from_model(model, out_dir, settings, source)` writes out_dir/transformer/ with
model.onnx (external data when over 2 GB), config.json (the PTDiTConfig) and export.json (these
settings plus the model source), validates the file (full checker, shape inference, IR version
ONNX Runtime accepts) and updates out_dir/model_index.json.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ptdit_export.export.artifacts import atomic_dir, update_model_index, write_json
from ptdit_export.progress import Stages

log = logging.getLogger(__name__)

INPUT_NAMES = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask")
OUTPUT_NAME = "model_output"
IR_VERSION = 10  # ONNX Runtime 1.31 reads at most 13; onnx 1.23 would write 14
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
EXTERNAL_DATA_BYTES = 2**31 - 2**26  # protobuf's 2 GB limit, with room for the graph itself


@dataclass(frozen=True)
class Profile:
    """min / opt / max of one dynamic dimension (latent units for sizes)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"profile needs 1 <= min <= opt <= max; got {self.min}/{self.opt}/{self.max}")


@dataclass(frozen=True)
class ExportSettings:
    """How to export the transformer. Sizes are latent (pixels / vae_scale); frames are latent frames."""

    precision: str = "fp32"  # fp32 | fp16 | bf16: the dtype of the graph's tensors
    graph: str = "portable"  # portable (standard ops) | plugin (ptdit custom nodes + bodies)
    opset: int = 18  # ATC parses up to 18; ONNX Runtime and TensorRT take it
    dynamic: bool = True  # batch, size, frames (video) and text length from runtime shapes
    batch: int = 2  # traced batch (classifier-free guidance doubles the prompts)
    latent_height: int = 32
    latent_width: int = 32
    frames: int = 1
    text_len: int = 16  # traced caption length; any length runs when dynamic
    batch_profile: Profile = field(default_factory=lambda: Profile(1, 2, 8))
    height_profile: Profile | None = None  # None: traced size .. 4x (dynamic) or fixed (static)
    width_profile: Profile | None = None
    frames_profile: Profile | None = None
    text_profile: Profile = field(default_factory=lambda: Profile(1, 200, 512))
    # one-block: trace block 0, stamp out the rest (stitch.py) | full (also PTDIT_EXPORT_TRACE)
    trace: str = field(default_factory=lambda: os.environ.get("PTDIT_EXPORT_TRACE", "one-block"))

    def __post_init__(self) -> None:
        if self.precision not in DTYPES:
            raise ValueError(f"--precision {self.precision!r}: choose one of {', '.join(DTYPES)}")
        if self.graph not in ("portable", "plugin"):
            raise ValueError(f"--graph {self.graph!r}: choose 'plugin' or 'portable'")
        if not 14 <= self.opset <= 23:
            raise ValueError(f"--opset {self.opset}: use 14..23 (18 if the graph also goes to Ascend ATC)")
        if self.trace not in ("one-block", "full"):
            raise ValueError(f"--trace (or PTDIT_EXPORT_TRACE) {self.trace!r}: choose 'one-block' or 'full'")

    def profiles(self) -> dict[str, Profile]:
        """The shape ranges the engine promises, recorded beside the graph."""

        def default(size: int, given: Profile | None) -> Profile:
            if given is not None:
                return given
            return Profile(size, size, size * 4) if self.dynamic else Profile(size, size, size)

        batch = self.batch_profile if self.dynamic else Profile(self.batch, self.batch, self.batch)
        text = self.text_profile if self.dynamic else Profile(self.text_len, self.text_len, self.text_len)
        return {
            "batch": batch,
            "latent_height": default(self.latent_height, self.height_profile),
            "latent_width": default(self.latent_width, self.width_profile),
            "frames": default(self.frames, self.frames_profile) if self.frames > 1 else Profile(1, 1, 1),
            "text_len": text,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "profiles": {k: dataclasses.asdict(v) for k, v in self.profiles().items()}
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        for key in ("batch_profile", "height_profile", "width_profile", "frames_profile", "text_profile"):
            if isinstance(kw.get(key), dict):
                kw[key] = Profile(**kw[key])
        return cls(**kw)


def _keeps_fp32(name: str, dtype: torch.dtype) -> bool:
    """Parameters that stay fp32 in a fp16/bf16 graph: LayerNorm affines, the adaLN tables, and
    for bf16 the patch embedding (ONNX Conv takes bfloat16 only from opset 22)."""
    if "scale_shift_table" in name or "norm" in name.rsplit(".", 2)[-2:][0]:
        return True
    return dtype == torch.bfloat16 and name.startswith("pos_embed.")


def graph_model(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The model in the graph's precision, built tensor by tensor (no full-size extra copy).

    fp16/bf16: projections, attention and the MLP in that dtype; LayerNorm statistics, the adaLN
    tables and so modulation and gates, and the residual stream stay fp32, where fp16 overflows
    in deep DiTs (TensorRT 11 is strongly typed: the graph is the precision).
    """
    dtype = DTYPES[precision]
    if all(p.dtype == dtype for p in model.parameters()) and dtype == torch.float32:
        return model.eval()
    with torch.device("meta"):
        m = type(model)(model.config)
    state = {
        k: v.to(torch.float32 if _keeps_fp32(k, dtype) else dtype) for k, v in model.state_dict().items()
    }
    m.load_state_dict(state, assign=True)
    if dtype != torch.float32:
        m.residual_dtype = torch.float32
        m.compute_dtype = dtype
    return m.eval()


def example_inputs(
    config, settings: ExportSettings, batch=None, height=None, width=None, frames=None, text_len=None
):
    """Random inputs of the graph's dtypes at the given (default: traced) shape."""
    dtype = DTYPES[settings.precision]
    b = batch or settings.batch
    g = torch.Generator().manual_seed(0)
    f = frames or settings.frames
    h, w = height or settings.latent_height, width or settings.latent_width
    n = text_len or settings.text_len
    width_text = config.caption_channels or config.hidden_size
    mask = torch.ones(b, n, dtype=torch.int64)
    if b > 1 and n > 1:
        mask[-1, n // 2 :] = 0  # one padded caption
    return (
        torch.randn(b, config.in_channels, f, h, w, generator=g).to(dtype),
        torch.rand(b, generator=g) * 1000,
        torch.randn(b, n, width_text, generator=g).to(dtype),
        mask,
    )


def _dynamic_shapes(config, settings: ExportSettings) -> dict | None:
    if not settings.dynamic:
        return None
    from torch.export import Dim

    p = config.patch_size
    wf, wh, ww = config.compress_ratios
    prof = settings.profiles()
    # sizes are multiples of patch*window; the traced size must be >= 2 windows (1 specialises)
    hstep, wstep = p * wh, p * ww
    for name, size, step in (
        ("height", settings.latent_height, hstep),
        ("width", settings.latent_width, wstep),
    ):
        if size % step or size // step < 2:
            raise ValueError(
                f"dynamic export traces at latent {name} {size}: use a multiple of patch*window = {step}, "
                f"at least {2 * step} (pass --{name} {2 * step * 8} or larger in pixels)"
            )
    if settings.batch < 2 or settings.text_len < 2:
        raise ValueError("dynamic export traces with --batch >= 2 and a text length >= 2")
    batch = Dim("batch", min=1, max=max(prof["batch"].max, 2) * 64)
    text = Dim("text_len", min=1, max=max(prof["text_len"].max, 2) * 8)
    hw = Dim("h_windows", min=1, max=4096)
    ww_ = Dim("w_windows", min=1, max=4096)
    hs: dict[int, Any] = {0: batch, 3: hstep * hw, 4: wstep * ww_}
    if settings.frames > 1:
        if settings.frames % wf or settings.frames // wf < 2:
            raise ValueError(f"dynamic video export traces with frames a multiple of {wf}, at least {2 * wf}")
        hs[2] = wf * Dim("f_windows", min=1, max=1024) if wf > 1 else Dim("frames", min=1, max=4096)
    return {
        "hidden_states": hs,
        "timestep": {0: batch},
        "encoder_hidden_states": {0: batch, 1: text},
        "encoder_attention_mask": {0: batch, 1: text},
    }


def export_program(model, settings: ExportSettings, optimize: bool = True):
    """torch.onnx's program for `model` (a PT-DiT or a dense baseline) under `settings`, every
    block traced; the tracing step of `onnx_from_model`, without its checks, files and function
    bodies."""
    from ptdit_export.export import plugin_ops  # noqa: F401  (registers the onnx-plugin backend)
    from ptdit_export.model.attention import use_backend

    backend = "onnx-plugin" if settings.graph == "plugin" else "math"
    args = example_inputs(model.config, settings)
    with use_backend(backend), torch.no_grad():
        return torch.onnx.export(
            model,
            args,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=_dynamic_shapes(model.config, settings),
            opset_version=settings.opset,
            dynamo=True,
            optimize=optimize,
            verbose=False,
        )


def onnx_from_model(
    model: torch.nn.Module, out_dir: str | Path, settings: ExportSettings, source: dict | None = None
) -> Path:
    """Export `model` into out_dir/transformer/model.onnx; returns that path."""
    import onnx

    from ptdit_export.export import plugin_ops, stitch

    out_dir = Path(out_dir)
    model.config.check_latent(
        model.config.in_channels, settings.frames, settings.latent_height, settings.latent_width
    )
    t0 = time.perf_counter()
    stages = Stages(log)
    proto, weights = graph_proto(model, settings, stages)
    if settings.graph == "plugin":
        plugin_ops.add_functions(proto)
    proto.ir_version = IR_VERSION
    proto.producer_name = "ptdit-export"
    with atomic_dir(out_dir / "transformer") as tmp:
        path = tmp / "model.onnx"
        big = stitch.weight_bytes(weights, proto) > EXTERNAL_DATA_BYTES  # ByteSize() fails > 2 GB
        with stages(f"writing {path.name}{' with external data' if big else ''} ({len(weights)} weights)"):
            if weights:  # streamed, converted one tensor at a time
                stitch.write_model(proto, path, weights, external=big, progress=big)
            else:
                onnx.save_model(
                    proto,
                    str(path),
                    save_as_external_data=big,
                    all_tensors_to_one_file=True,
                    location="model.onnx.data",
                )
            del proto, weights
        with stages("validating (full checker, shape inference)"):
            validate_onnx(path)
        write_json(tmp / "config.json", model.config.to_dict())
        write_json(
            tmp / "export.json",
            settings.to_dict() | {"source": source or {}, "inputs": list(INPUT_NAMES), "output": OUTPUT_NAME},
        )
    update_model_index(out_dir, transformer="transformer")
    log.info("exported %s in %.1f s", out_dir / "transformer" / "model.onnx", time.perf_counter() - t0)
    return out_dir / "transformer" / "model.onnx"


def graph_proto(model: torch.nn.Module, settings: ExportSettings, stages: Stages | None = None):
    """The finished graph of MODEL under SETTINGS: (ModelProto, weights to bind when writing).

    one-block: block 0 traced, the others stamped out (stitch.py) and their weights converted
    when written; full: every block traced, all weights already inside the proto."""
    from ptdit_export.export import stitch

    stages = stages or Stages(log)
    layers, what = (
        model.config.num_layers,
        f"{settings.graph} graph ({settings.precision}, opset {settings.opset})",
    )

    def full():
        with stages(f"tracing all {layers} blocks, {what}"):
            return export_program(graph_model(model, settings.precision), settings).model_proto, {}

    if settings.trace == "full":
        return full()
    try:
        return _stamped_proto(model, settings, stages, what)
    except stitch.StitchError as err:
        log.warning("one-block tracing failed (%s): tracing all %d blocks instead", err, layers)
        return full()


def _stamped_proto(model: torch.nn.Module, settings: ExportSettings, stages: Stages, what: str):
    from ptdit_export.export import stitch, trace_cache

    layers = model.config.num_layers
    key = trace_cache.trace_key(model.config.to_dict(), settings.to_dict())
    state = model.state_dict()
    proto = trace_cache.load(key, {k: tuple(v.shape) for k, v in state.items()})
    if proto is None:
        with stages(f"tracing block 0 of {layers}, {what}"):
            one = graph_model(stitch.one_block_model(model), settings.precision)
            proto = stitch.trace_one_block(one, lambda m, optimize: export_program(m, settings, optimize))
            del one
        trace_cache.store(key, proto)
    with stages(f"stamping out {layers} blocks"):
        proto = stitch.stamp_blocks(proto, layers)
        weights = stitch.bind_weights(proto, state)
        stitch.fold_weights(proto, weights)
    unbound = {i.name for i in proto.graph.input} - set(INPUT_NAMES)
    if unbound:
        raise stitch.StitchError(f"graph inputs without weights: {sorted(unbound)[:3]}")
    return proto, weights


def validate_onnx(path: Path) -> None:
    """Full checker, shape inference and an IR version / opset ONNX Runtime 1.31 reads."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    inferred = Path(str(path) + ".inferred")
    try:
        onnx.shape_inference.infer_shapes_path(str(path), str(inferred), check_type=True, strict_mode=False)
    finally:
        inferred.unlink(missing_ok=True)
    model = onnx.load(str(path), load_external_data=False)
    if model.ir_version > 13:
        raise ValueError(f"{path}: IR version {model.ir_version} is newer than ONNX Runtime 1.31 reads (13)")
