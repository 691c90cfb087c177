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


class UsageProblem(ValueError):
    """A bad option value (exit 2)."""


def fail(message: str, code: int, err: BaseException | None = None) -> None:
    """One `Error: ...` line and exit CODE; with -vv the traceback instead."""
    if err is not None and click.get_current_context().find_root().params.get("verbose", 0) >= 2:
        raise err
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _range(value: str | None, name: str) -> tuple[int, int, int] | None:
    """'512' or '256,512,1024' -> (min, opt, max)."""
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.split(",")]
    except ValueError:
        raise UsageProblem(f"{name} {value!r}: give one whole number or min,opt,max (e.g. 1,1,4)") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not parts[0] <= parts[1] <= parts[2]:
        raise UsageProblem(f"{name} {value}: give one value or min,opt,max with min <= opt <= max")
    return tuple(parts)


def _vae_scale(vae: str | None, given: int | None, preset) -> int:
    """Pixels per latent: --vae-scale, else S of --vae space-to-depth:S, else the preset's, else 8."""
    from ptdit_export.builder.components import space_to_depth_factor

    factor = space_to_depth_factor(vae) if vae else None  # raises for a malformed S
    if given is not None and not 1 <= given <= 64:
        raise UsageProblem(f"--vae-scale {given}: give pixels per latent, from 1 to 64")
    if given is not None and factor is not None and given != factor:
        raise UsageProblem(
            f"--vae-scale {given} contradicts --vae {vae}: drop --vae-scale or make it {factor}"
        )
    if given is not None:
        return given
    if factor is not None:
        return factor
    return preset.components.get("vae_scale", 8) if preset else 8


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
    type=click.Path(path_type=Path),
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
    type=click.Choice(["auto", "tensorrt", "onnxruntime", "ascend", "torch"]),
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
@click.option(
    "--triton",
    "triton_repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write a Triton model repository serving the folder (model `ptdit`, replaced if present).",
)
@click.option("--force", is_flag=True, help="Rebuild even when the manifest says the engine is up to date.")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=600,
    show_default=True,
    help="Seconds to wait while another build writes the same folder.",
)
@click.option("--no-wait", is_flag=True, help="Fail at once when another build writes the same folder.")
@ascend_options
def build(model: str | None, out_dir: Path | None, vae_scale: int | None, **o) -> None:
    """Export and build an engine folder for the best available backend.

    The folder is replaced all at once when every file is written (or not at all), with
    manifest.json listing every file's size and sha256; an unchanged rebuild is a cache hit."""
    from ptdit_export.builder.components import ComponentError
    from ptdit_export.builder.pipeline import BuildSettings, prepare, run
    from ptdit_export.builder.profiles import ShapeRange
    from ptdit_export.builder.tensorrt import TensorRTUnavailable
    from ptdit_export.model.presets import PRESETS, default_model

    model = model or default_model()
    preset = PRESETS.get(model)
    out_dir = out_dir or DEFAULT_OUT / Path(model).name
    # 1. every option parsed and bounded before any heavy work (exit 2)
    try:
        scale = _vae_scale(o["vae"], vae_scale, preset)
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
        plan = prepare(model, out_dir, settings, seed=o["seed"], components=components)
    except (UsageProblem, ComponentError, ValueError) as err:
        fail(str(err), 2, err)
    # 2. the build (exit 1 on failure; the previous folder is then unchanged)
    try:
        manifest = run(plan, force=o["force"], lock_timeout=0 if o["no_wait"] else o["lock_timeout"])
    except TensorRTUnavailable as err:
        fail(str(err), 1, err)
    except KeyboardInterrupt as err:
        fail(f"interrupted; {out_dir} is unchanged", 1, err)
    except OSError as err:
        what = err.strerror or str(err)
        what = f"{what} ({err.filename})" if err.filename else what
        fail(f"{what}; {out_dir} is unchanged (a build needs room for a second copy of the folder)", 1, err)
    except Exception as err:
        text = str(err) if isinstance(err, (ValueError, RuntimeError)) else f"{type(err).__name__}: {err}"
        first = (text.strip().splitlines() or [type(err).__name__])[0]  # one line; -vv shows the rest
        fail(f"{first}; {out_dir} is unchanged", 1, err)
    state = "up to date" if manifest.get("cache_hit") else "built"
    click.echo(f"{out_dir}: {state} for {manifest['backend']} ({manifest['precision']})")
    if o["triton_repo"] is not None:  # 3. the Triton model repository around the new folder
        from ptdit_export.serving import triton_repo_from_engine

        try:
            model_dir = triton_repo_from_engine(out_dir, o["triton_repo"], force=True)
        except (OSError, ValueError) as err:
            fail(f"{err} (the engine folder {out_dir} is built)", 1, err)
        click.echo(
            f"{model_dir.parent}: Triton model repository (serve it with `ptdit-export serve {model_dir.parent}`)"
        )


COMMANDS = [build]
