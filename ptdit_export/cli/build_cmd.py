"""`ptdit-export build`: the main command."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

DEFAULT_OUT = Path("engines")
RANGES = ("prompts", "height", "width", "frames", "text_len")  # min,opt,max options, in this order


def ascend_options(fn):
    """--soc-version, --dynamic-dims, --precision-mode (used with --backend ascend)."""
    from ptdit_export.builder.ascend import CLICK_OPTIONS

    return functools.reduce(lambda f, option: option(f), reversed(CLICK_OPTIONS), fn)


def _build_ascend(model: str, out_dir: Path, scale: int, ranges: dict, o: dict) -> None:
    from ptdit_export.builder.ascend import AtcFailed, AtcUnavailable, build_from_cli, describe

    try:
        report = build_from_cli(
            model, out_dir, o["precision"], *(ranges[k] for k in RANGES),
            o["no_cfg"], scale, o["soc_version"], o["dynamic_dims"], o["precision_mode"], o["seed"],
            {"text_encoder": o["text_encoder"], "vae": o["vae"]}, o["force"],
        )  # fmt: skip
    except (AtcFailed, AtcUnavailable, FileNotFoundError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    click.echo(f"{out_dir}: {describe(report)}")


def _range(value: str | None, name: str) -> tuple[int, int, int] | None:
    """'512' or '256,512,1024' -> (min, opt, max)."""
    if value is None:
        return None
    parts = [int(v) for v in value.split(",")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not parts[0] <= parts[1] <= parts[2]:
        raise click.BadParameter("give one value or min,opt,max with min <= opt <= max", param_hint=name)
    return tuple(parts)


@click.command("build")
@click.option(
    "--model",
    "-m",
    default=None,
    help="Preset, checkpoint folder/file or config JSON (default: demo if shipped, else tiny).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Pipeline folder (default: engines/<model>).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "bf16", "int8", "fp8"]),
    default="fp16",
    show_default=True,
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "tensorrt", "onnxruntime", "ascend"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--prompts",
    default="1,1,4",
    show_default=True,
    help="Prompts per call, min,opt,max (CFG doubles the batch).",
)
@click.option(
    "--height", default=None, help="Image height in pixels, one value or min,opt,max (default: the model's)."
)
@click.option("--width", default=None, help="Image width in pixels, one value or min,opt,max.")
@click.option("--frames", default="1", show_default=True, help="Latent frames, one value or min,opt,max.")
@click.option(
    "--text-len",
    default=None,
    help="Caption tokens, min,opt,max (default: 1,200,512, or 1,L,L for a preset whose encoder takes L).",
)
@click.option("--no-cfg", is_flag=True, help="Profiles without classifier-free guidance's doubled batch.")
@click.option(
    "--vae-scale", type=int, default=None, help="Pixels per latent (default: 8, or the preset's VAE)."
)
@click.option(
    "--text-encoder",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Hugging Face T5 encoder folder (with its tokenizer) to export beside the transformer.",
)
@click.option("--vae", default=None, help="diffusers AutoencoderKL folder, or space-to-depth:S.")
@click.option(
    "--provider", default=None, help="ONNX Runtime provider (default: CUDA if available, else CPU)."
)
@click.option("--plugins", "plugin_library", default=None, help="TensorRT: path to libptdit_plugins.so.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of random weights for untrained presets."
)
@click.option("--force", is_flag=True, help="Rebuild even when the manifest says the engine is up to date.")
@ascend_options
def build(model: str | None, out_dir: Path | None, vae_scale: int | None, **o) -> None:
    """Export and build an engine folder for the best available backend."""
    from ptdit_export.builder.pipeline import BuildSettings
    from ptdit_export.builder.pipeline import build as run_build
    from ptdit_export.builder.profiles import ShapeRange
    from ptdit_export.builder.tensorrt import TensorRTUnavailable
    from ptdit_export.model.presets import PRESETS, default_model

    model = model or default_model()
    preset = PRESETS.get(model)
    scale = vae_scale or (preset.components.get("vae_scale", 8) if preset else 8)
    out_dir = out_dir or DEFAULT_OUT / Path(model).name
    ranges = {k: _range(o[k], f"--{k.replace('_', '-')}") for k in RANGES}
    if ranges["text_len"] is None:
        tokens = preset.components.get("max_length") if preset else None
        ranges["text_len"] = (1, tokens, tokens) if tokens else (1, 200, 512)
    if o["backend"] == "ascend":
        _build_ascend(model, out_dir, scale, ranges, o)
        return
    settings = BuildSettings(
        backend=o["backend"],
        precision=o["precision"],
        shapes=ShapeRange(**ranges, cfg=not o["no_cfg"]),
        vae_scale=scale,
        provider=o["provider"],
        plugin_library=o["plugin_library"],
    )
    components = {"text_encoder": o["text_encoder"], "vae": o["vae"]}
    try:
        manifest = run_build(
            model, out_dir, settings, seed=o["seed"], components=components, force=o["force"]
        )
    except (TensorRTUnavailable, FileNotFoundError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    state = "up to date" if manifest.get("cache_hit") else "built"
    click.echo(f"{out_dir}: {state} for {manifest['backend']} ({manifest['precision']})")


COMMANDS = [build]
