"""T5 text encoder -> DIR/text_encoder/model.onnx + DIR/tokenizer (the runtime's text stage).

`onnx_from_t5(model_dir, out_dir)` reads a local Hugging Face folder (a T5EncoderModel or a
whole T5 checkpoint; never downloads), exports the encoder with dynamic batch and length:

    input_ids [B, L] int64, attention_mask [B, L] int64 (1 keep, 0 pad) -> last_hidden_state [B, L, D] float32

and saves its fast tokenizer beside it (tokenizer.json, read by the runtime without
transformers) plus text_encoder/config.json (`TextEncoderConfig`, max_length 200 for the
released model). The export runs in float32: T5 v1.1 overflows in float16.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ptdit_export.export.artifacts import atomic_dir, update_model_index, write_json
from ptdit_export.export.transformer import IR_VERSION, validate_onnx
from ptdit_runtime.configs import TextEncoderConfig

log = logging.getLogger(__name__)

EXTERNAL_DATA_BYTES = 1 << 30  # above this, weights go to model.onnx.data (protobuf's limit is 2 GB)


def save_onnx_program(program, path: Path, parameters: int) -> Path:
    """Save a torch.onnx program (external data when large), set the IR version ONNX Runtime
    reads, and validate it (full checker, shape inference)."""
    import onnx

    program.save(str(path), external_data=parameters * 4 > EXTERNAL_DATA_BYTES)
    proto = onnx.load(str(path), load_external_data=False)
    if proto.ir_version != IR_VERSION:
        proto.ir_version = IR_VERSION
        onnx.save(proto, str(path))
    validate_onnx(path)
    return path


def _load_tokenizer(model_dir: Path, max_length: int):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except Exception as err:  # missing files, sentencepiece/protobuf needed for conversion, ...
        raise ValueError(
            f"cannot read a tokenizer from {model_dir} ({type(err).__name__}: {err}); the folder needs "
            "tokenizer.json or spiece.model (pip install sentencepiece protobuf to convert the latter)"
        ) from err
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"the tokenizer of {model_dir} is a slow tokenizer; the runtime reads tokenizer.json: "
            "install `tokenizers` and `sentencepiece` so AutoTokenizer can convert it"
        )
    tokenizer.model_max_length = max_length
    return tokenizer


def onnx_from_t5(model_dir: str | Path, out_dir: str | Path, max_length: int = 200, opset: int = 18) -> Path:
    """Export the T5 encoder of `model_dir` into engine folder `out_dir`; returns the model.onnx path."""
    import torch
    from transformers import T5EncoderModel

    from ptdit_export.export import stitch, trace_cache

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a Hugging Face model folder (no config.json); download the T5 encoder "
            "(e.g. google/t5-v1_1-xxl) with its tokenizer into a folder and pass that"
        )
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1; got {max_length}")
    tokenizer = _load_tokenizer(model_dir, max_length)
    model = T5EncoderModel.from_pretrained(
        model_dir, local_files_only=True, dtype=torch.float32, attn_implementation="eager"
    ).eval()

    class Encoder(torch.nn.Module):
        def __init__(self, t5):
            super().__init__()
            self.t5 = t5

        def forward(self, input_ids, attention_mask):
            return self.t5(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # example with batch 2 and length 8 (dims of size 1 would be specialised by torch.export)
    ids = torch.zeros(2, 8, dtype=torch.int64)
    mask = torch.ones(2, 8, dtype=torch.int64)
    batch, length = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("length", min=2, max=4096)
    dims = {0: batch, 1: length}
    log.info("exporting the T5 encoder of %s (%d parameters)", model_dir, model.num_parameters())
    encoder = Encoder(model).eval()
    state = encoder.state_dict()
    key = trace_cache.structure_key("t5-encoder", {"config": model.config.to_dict(), "opset": opset})
    proto = trace_cache.load(key, {k: tuple(v.shape) for k, v in state.items()})
    if proto is None:  # traced without weights (they are bound below), kept for the next build
        with torch.no_grad():
            program = torch.onnx.export(
                encoder,
                (ids, mask),
                dynamo=True,
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_shapes={"input_ids": dims, "attention_mask": dims},
                opset_version=opset,
                optimize=False,
                verbose=False,
            )
        proto = stitch.weightless(program, set(state))
        trace_cache.store(key, proto)
    weights = stitch.bind_weights(proto, state)
    stitch.fold_weights(proto, weights)
    config = TextEncoderConfig(
        max_length=max_length,
        hidden_size=int(model.config.d_model),
        model_type=str(model.config.model_type),
        source=str(model_dir),
        opset=opset,
    )
    with atomic_dir(out_dir / "text_encoder") as tmp:
        proto.ir_version = IR_VERSION
        big = stitch.weight_bytes(weights, proto) > EXTERNAL_DATA_BYTES
        stitch.write_model(proto, tmp / "model.onnx", weights, external=big, progress=big)
        validate_onnx(tmp / "model.onnx")
        write_json(tmp / "config.json", dataclasses.asdict(config))
    with atomic_dir(out_dir / "tokenizer") as tmp:
        tokenizer.save_pretrained(tmp)
    update_model_index(out_dir, text_encoder="text_encoder", tokenizer="tokenizer")
    log.info("wrote %s and %s", out_dir / "text_encoder", out_dir / "tokenizer")
    return out_dir / "text_encoder" / "model.onnx"
