"""Option groups shared by `export` and `build`, and their translation into ExportSettings."""

from __future__ import annotations

import functools

import click

DEFAULT_MODEL = "tiny"


def export_options(fn):
    options = [
        click.option(
            "--model",
            "-m",
            default=DEFAULT_MODEL,
            show_default=True,
            help="Preset name, checkpoint folder/file, or predictor config JSON.",
        ),
        click.option(
            "--precision",
            type=click.Choice(["fp32", "fp16", "bf16", "int8", "fp8"]),
            default="fp32",
            show_default=True,
            help="Dtype of the graph's tensors (norms and residual stay fp32); int8/fp8: Q/DQ graphs.",
        ),
        click.option(
            "--graph",
            type=click.Choice(["plugin", "portable"]),
            default="portable",
            show_default=True,
            help="plugin: ptdit custom nodes (with standard-op bodies); portable: standard ops only.",
        ),
        click.option(
            "--height",
            type=click.IntRange(min=1),
            default=None,
            help="Traced image height in pixels (default: the model's).",
        ),
        click.option(
            "--width",
            type=click.IntRange(min=1),
            default=None,
            help="Traced image width in pixels (default: the model's).",
        ),
        click.option("--frames", type=int, default=1, show_default=True, help="Latent frames (video)."),
        click.option(
            "--batch", type=int, default=2, show_default=True, help="Traced batch (CFG doubles prompts)."
        ),
        click.option(
            "--dynamic/--static",
            default=True,
            show_default=True,
            help="Batch, size, frames and text length from runtime shapes, or all fixed.",
        ),
        click.option(
            "--opset", type=int, default=18, show_default=True, help="ONNX opset (ATC parses <= 18)."
        ),
        click.option("--vae-scale", type=int, default=8, show_default=True, help="Pixels per latent."),
        click.option("--text-len", type=int, default=16, show_default=True, help="Traced caption length."),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed of random weights for presets."
        ),
        click.option(
            "--trace",
            type=click.Choice(["one-block", "full"]),
            default=None,
            help="one-block: trace block 0 and stamp out the others (fast) [default, or "
            "$PTDIT_EXPORT_TRACE]; full: trace every block.",
        ),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), fn)


def settings_from_options(config, opts: dict):
    """ExportSettings from CLI options; pixel sizes become latent sizes (checked against windows)."""
    from ptdit_export.export.transformer import ExportSettings

    scale = opts["vae_scale"]
    step = config.patch_size * max(config.compress_ratios[1:])
    native = max(config.sample_size, 2 * step)

    def latent(pixels: int | None, name: str) -> int:
        if pixels is None:
            return native
        if pixels % scale:
            raise click.BadParameter(
                f"{pixels} is not a multiple of the VAE scale {scale}", param_hint=f"--{name}"
            )
        return pixels // scale

    trace = {"trace": opts["trace"]} if opts.get("trace") else {}  # else $PTDIT_EXPORT_TRACE or one-block
    return ExportSettings(
        **trace,
        precision=opts["precision"],
        graph=opts["graph"],
        opset=opts["opset"],
        dynamic=opts["dynamic"],
        batch=opts["batch"],
        latent_height=latent(opts["height"], "height"),
        latent_width=latent(opts["width"], "width"),
        frames=opts["frames"],
        text_len=opts["text_len"],
    )
