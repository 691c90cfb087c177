"""`ptdit-export export` and `ptdit-export verify`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ptdit_export.cli.options import export_options, settings_from_options


@click.command("export")
@export_options
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Pipeline folder to write (DIR/transformer/model.onnx, DIR/model_index.json).",
)
@click.option(
    "--verify/--no-verify", default=True, show_default=True, help="Run the parity check after export."
)
@click.option(
    "--calibration-prompts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="int8/fp8: captions, one a line, for the calibration runs (non-demo models need "
    "--text-encoder) [default: the demo's training captions, or random embeddings with a warning].",
)
@click.option(
    "--calibration-count",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="int8/fp8: captions sampled.",
)
@click.option(
    "--calibration-steps",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="int8/fp8: sampler steps per caption (activations are recorded at every step).",
)
@click.option(
    "--text-encoder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="int8/fp8: Hugging Face T5 encoder folder that turns --calibration-prompts into embeddings.",
)
def export(
    out_dir: Path,
    verify: bool,
    calibration_prompts: Path | None,
    calibration_count: int,
    calibration_steps: int,
    text_encoder: Path | None,
    **opts,
) -> None:
    """Export the PT-DiT transformer to ONNX (plugin or portable graph)."""
    from ptdit_export.quant.calibrate import CalibrationSettings

    calibration = CalibrationSettings(  # used by --precision int8|fp8 only
        prompts=calibration_count,
        steps=calibration_steps,
        seed=opts["seed"],
        prompts_file=str(calibration_prompts) if calibration_prompts else None,
        text_encoder=str(text_encoder) if text_encoder else None,
    )
    try:
        path = _export_into(out_dir, opts, calibration)
        click.echo(f"wrote {path}")
        if verify:  # the export's model is freed by now: never two copies of a large model
            _report(out_dir)
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted; nothing half-written was kept in {out_dir}: run the command again"
        ) from None


def _export_into(out_dir: Path, opts: dict, calibration) -> Path:
    """The export (and, for int8/fp8, calibration and the Q/DQ graph); returns the graph's path."""
    from ptdit_export.export.source import model_from_source, source_of
    from ptdit_export.export.transformer import onnx_from_model
    from ptdit_export.quant import float_precision, quantize_exported

    source = source_of(opts["model"], opts["seed"])
    model = model_from_source(source)
    quant = opts["precision"] if opts["precision"] in ("int8", "fp8") else None
    target = "onnxruntime" if quant == "int8" and opts["graph"] == "portable" else "tensorrt"
    settings = settings_from_options(
        model.config, opts | {"precision": float_precision(opts["precision"], target)}
    )
    path = onnx_from_model(model, out_dir, settings, source)
    if quant:  # calibrate with the sampler, write the Q/DQ graph (docs/quantization.md)
        path = quantize_exported(
            out_dir, model, opts["model"], quant, target, calibration, vae_scale=opts["vae_scale"]
        )
    return path


class InputError(click.ClickException):
    """Bad input: one `Error: ...` line, exit status 2."""

    exit_code = 2


@click.command("verify")
@click.argument("engine_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--shape",
    "shapes",
    type=(int, int, int, int, int),
    multiple=True,
    metavar="B F H W L",
    help="Latent shape to check (batch, frames, height, width, text length) inside the folder's "
    "profiles; repeatable [default: the traced shape and two more inside the profiles].",
)
@click.option(
    "--files", "files", is_flag=True, help="Check every file against the folder's manifest.json (sha256)."
)
def verify(engine_dir: Path, shapes, files: bool) -> None:
    """Compare an exported graph with the PyTorch model on the same random inputs."""
    if files:
        _check_files(engine_dir)
        return
    _report(engine_dir, list(shapes) or None)


def _check_files(engine_dir: Path) -> None:
    from ptdit_runtime.manifest import FolderError, check_folder

    try:
        manifest = check_folder(engine_dir, full=True)
    except FolderError as err:
        click.echo(f"Error: {err}", err=True)
        sys.exit(1)
    click.echo(f"{engine_dir}: all {len(manifest['files'])} files match manifest.json (size and sha256)")


def _report(engine_dir: Path, shapes=None) -> None:
    from ptdit_export.export.verify import ShapeError, VerifyInputError, verify_dir

    try:
        checks = verify_dir(engine_dir, shapes)
    except (ShapeError, VerifyInputError) as err:
        raise InputError(str(err)) from None
    _print_checks(checks)
    if not all(c.passed for c in checks):
        click.echo("parity check failed", err=True)
        sys.exit(1)


def _print_checks(checks) -> None:
    """One table per checked file, named above it and in its verdict."""
    for file in dict.fromkeys(c.file for c in checks):
        rows = [c for c in checks if c.file == file]
        click.echo(f"{file} ({rows[0].runner})")
        click.echo(
            f"  {'shape (B,F,H,W,L)':<22} {'output':<14} {'max abs':>10} {'max rel':>10} {'tol':>8}  result"
        )
        for c in rows:
            shape = ",".join(map(str, c.shape))
            errors = f"{c.max_abs:>10.3e} {c.max_rel:>10.3e} {c.tolerance:>8.1e}"
            click.echo(f"  {shape:<22} {c.output:<14} {errors}  {'PASS' if c.passed else 'FAIL'}")
        failed = sum(not c.passed for c in rows)
        verdict = f"FAIL at {failed} of {len(rows)} shapes" if failed else f"PASS at {len(rows)} shapes"
        click.echo(f"{verdict}: {file}")


COMMANDS = [export, verify]
