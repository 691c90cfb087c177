"""Runtime benchmark: time per stage and the share of the denoising loop spent outside the engine.

    python benchmarks/bench_runtime.py [--preset small] [--size 512] [--steps 30] [--threads 2]
    python benchmarks/bench_runtime.py --engine-dir DIR        # an existing engine folder

Without --engine-dir it builds a temporary engine folder with ONNX Runtime CPU in mind: the
preset's transformer with random weights (static export at the benchmark size, batch 2 for
guidance), a random 2-layer T5 encoder with a locally built tokenizer (max length 200) and a
random 8x AutoencoderKL decoder. Their weights are random, so the pictures are noise; the
transformer is the preset's real size, the text encoder and VAE are small stand-ins.

It prints the per-stage table of one generation after a warm-up run, and the loop time
outside the engine calls (sampler, guidance, copies, Python) as a share of the loop. Goal:
under 5 %.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

MAX_LENGTH = 200


def t5_stand_in(folder: Path, d_model: int) -> Path:
    """A random 2-layer T5 encoder folder with a WordLevel tokenizer (nothing downloaded)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = "a red green blue circle square triangle on background left right top bottom the".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)
    torch.manual_seed(0)
    heads = max(d_model // 64, 1)
    cfg = T5Config(
        vocab_size=len(vocab), d_model=d_model, d_kv=d_model // heads, d_ff=2 * d_model, num_layers=2,
        num_heads=heads, feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
    )  # fmt: skip
    T5EncoderModel(cfg).eval().save_pretrained(folder)
    return folder


def build_folder(root: Path, preset: str, size: int) -> Path:
    import torch
    from diffusers import AutoencoderKL

    from ptdit_export.export.artifacts import update_model_index, write_json
    from ptdit_export.export.source import randomise_
    from ptdit_export.export.text_encoder import onnx_from_t5
    from ptdit_export.export.transformer import ExportSettings, onnx_from_model
    from ptdit_export.export.vae import onnx_from_vae
    from ptdit_export.model import PTDiT

    model = randomise_(PTDiT.from_config(preset), 0).eval()
    latent = size // 8
    t0 = time.perf_counter()
    settings = ExportSettings(
        dynamic=False, batch=2, latent_height=latent, latent_width=latent, text_len=MAX_LENGTH
    )
    onnx_from_model(model, root, settings, {"preset": preset, "seed": 0})
    onnx_from_t5(t5_stand_in(root.parent / "t5", model.config.caption_channels), root, max_length=MAX_LENGTH)
    torch.manual_seed(0)
    blocks = 4  # 8x spatial compression
    vae = AutoencoderKL(
        latent_channels=model.config.in_channels, block_out_channels=(16, 32, 32, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
        norm_num_groups=8,
    )  # fmt: skip
    onnx_from_vae(vae.eval(), root)
    write_json(root / "scheduler" / "scheduler_config.json", {"kind": "rflow"})
    update_model_index(root, scheduler="scheduler")
    from ptdit_runtime.manifest import FORMAT, MANIFEST, records_for

    manifest = {"format": FORMAT, "key": "bench", "backend": "onnxruntime", "files": records_for(root)}
    write_json(root / MANIFEST, manifest)  # last, as `ptdit-export build` does; from_dir requires it
    print(f"built a {preset} engine folder for {size}x{size} in {time.perf_counter() - t0:.0f} s")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description="ptdit_runtime per-stage timing on ONNX Runtime CPU")
    parser.add_argument("--engine-dir", type=Path, default=None)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=512, help="square picture size in pixels")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1, help="timed generations after the warm-up")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from ptdit_export.bench.load import load_report

    print(load_report("before", args.threads), flush=True)
    with tempfile.TemporaryDirectory(prefix="ptdit-bench-") as tmp:
        folder = args.engine_dir or build_folder(Path(tmp) / "engine", args.preset, args.size)
        from ptdit_runtime import Pipeline

        pipe = Pipeline.from_dir(folder, backend="onnxruntime", provider="cpu", threads=args.threads)
        request = dict(steps=args.steps, guidance=4.0, seed=0, height=args.size, width=args.size)
        pipe("a red circle on a blue background", **dict(request, steps=2))  # warm-up
        runs = [pipe("a red circle on a blue background", **request) for _ in range(args.runs)]
    t = min(runs, key=lambda r: r.timings.total).timings
    print(
        f"\nONNX Runtime CPU, {args.threads} threads, {args.size}x{args.size}, {args.steps} steps, guidance 4"
    )
    print(t.table())
    calls = t.transformer
    print(f"engine call: mean {statistics.mean(calls) * 1e3:.2f} ms, min {min(calls) * 1e3:.2f} ms")
    per_step = t.outside_engine / len(calls) * 1e3
    print(
        f"denoising loop {t.loop * 1e3:.1f} ms, outside the engine {t.outside_engine * 1e3:.2f} ms "
        f"({per_step:.3f} ms per step) = {100 * t.outside_share:.2f} % of the loop (goal < 5 %)"
    )
    print(load_report("after", args.threads))


if __name__ == "__main__":
    main()
