"""Tiny components made on the spot (never downloaded), cached for the whole test session.

- a Hugging Face T5 encoder folder: random T5EncoderModel + a WordLevel tokenizer built with
  the `tokenizers` library (T5-like: "</s>" appended, "<pad>" = 0, "<unk>" for unknown words);
- its ONNX export (`onnx_from_t5`, max_length 16);
- a tiny PTDiT (the `tiny` preset with 12 latent channels for a 2x space-to-depth VAE and 24
  output channels, so the velocity is the first half), every parameter randomised, exported
  static (batch 2 = one prompt with guidance, latent 16x16, text length 16) with the lead's
  `onnx_from_model`; static because a dynamic export of even this model takes over a minute;
- engine folders assembling them with a space-to-depth VAE decoder and a scheduler config, with
  the root manifest.json a build writes (`write_manifest`).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

WORDS = (
    "a red green blue yellow white black circle square triangle on background left right top "
    "bottom center the of and with picture small large bright dark"
).split()
MAX_LENGTH = 16
LATENT = 16  # latent rows and columns of the static transformer export
FACTOR = 2  # space-to-depth VAE factor: pictures are LATENT * FACTOR pixels square
PIXELS = LATENT * FACTOR
TINY_CONFIG = dict(in_channels=3 * FACTOR * FACTOR, out_channels=6 * FACTOR * FACTOR)


@functools.cache
def scratch() -> Path:
    root = Path(tempfile.mkdtemp(prefix="ptdit-runtime-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def t5_folder() -> Path:
    """A local Hugging Face folder: random T5 encoder (d_model 64) + fast tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    folder = scratch() / "t5"
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(vocab), d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
    )  # fmt: skip
    T5EncoderModel(cfg).eval().save_pretrained(folder)
    return folder


@functools.cache
def text_export() -> Path:
    """An engine folder holding only text_encoder/ and tokenizer/ (exported once)."""
    from ptdit_export.export.text_encoder import onnx_from_t5

    out = scratch() / "text-export"
    onnx_from_t5(t5_folder(), out, max_length=MAX_LENGTH)
    return out


@functools.cache
def tiny_model():
    """The randomised tiny PTDiT (every parameter, zero-initialised branches included)."""
    import torch

    from ptdit_export.export.source import randomise_
    from ptdit_export.model import PTDiT

    torch.manual_seed(0)
    model = PTDiT.from_config("tiny", **TINY_CONFIG)
    return randomise_(model, 3).eval()


@functools.cache
def transformer_export() -> Path:
    """An engine folder holding only transformer/ (the lead's exporter, static shapes)."""
    from ptdit_export.export.transformer import ExportSettings, onnx_from_model

    out = scratch() / "transformer-export"
    settings = ExportSettings(
        dynamic=False, batch=2, latent_height=LATENT, latent_width=LATENT, text_len=MAX_LENGTH
    )
    onnx_from_model(tiny_model(), out, settings)
    return out


def engine_folder(
    root: Path, *, text: bool = True, vae: bool = True, scheduler: dict | None = None, weights: bool = True
) -> Path:
    """Assemble a complete engine folder under `root` from the cached exports."""
    from ptdit_export.export.artifacts import update_model_index, write_json
    from ptdit_export.export.vae import SpaceToDepthVAE

    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(transformer_export() / "transformer", root / "transformer")
    if weights:  # for the torch backend
        from safetensors.torch import save_file

        save_file(tiny_model().state_dict(), str(root / "transformer" / "model.safetensors"))
    update_model_index(root, transformer="transformer", text_encoder=None, tokenizer=None, vae_decoder=None)
    if text:
        for name in ("text_encoder", "tokenizer"):
            shutil.copytree(text_export() / name, root / name)
        update_model_index(root, text_encoder="text_encoder", tokenizer="tokenizer")
    if vae:
        SpaceToDepthVAE(FACTOR).onnx_decoder(root)
    write_json(root / "scheduler" / "scheduler_config.json", scheduler or {"kind": "rflow"})
    update_model_index(root, scheduler="scheduler")
    return write_manifest(root)


def write_manifest(root: Path, backend: str = "onnxruntime") -> Path:
    """The root manifest.json over every file now in ROOT (what `ptdit-export build` writes last);
    call it again after changing a test folder on purpose."""
    import json

    from ptdit_runtime.manifest import FORMAT, MANIFEST, records_for

    manifest = {"format": FORMAT, "key": "test-folder", "backend": backend, "files": records_for(root)}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return root


@functools.cache
def shared_engine_folder() -> Path:
    """One complete folder many tests read (never modify it)."""
    return engine_folder(scratch() / "engine")


def copy_folder(src: Path, dst: Path) -> Path:
    """A private copy of an engine folder, to damage on purpose."""
    shutil.copytree(src, dst)
    return dst


def run_cli(*args: str):
    """`ptdit-export ARGS` in-process through the real command group (its error handling included)."""
    from click.testing import CliRunner

    from ptdit_export.cli import main

    return CliRunner().invoke(main, list(args))


def assert_one_error(result, code: int, *needles: str) -> str:
    """The command failed with exit CODE, printed exactly one `Error:` line (containing every
    needle) and no traceback; returns that line."""
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == code, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an escaped exception
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]
