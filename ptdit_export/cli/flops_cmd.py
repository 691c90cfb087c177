"""`ptdit-export flops`: GFLOPs of PT-DiT vs dense baselines, and the paper's Eq. 4."""

from __future__ import annotations

import json

import click

DEFAULT_RESOLUTIONS = (256, 512, 1024, 2048)


def _parse_window(value: str) -> str | tuple[int, int, int]:
    if value in ("schedule", "preset"):
        return value
    try:
        f, h, w = (int(v) for v in value.split(","))
    except ValueError as err:
        raise click.BadParameter("use 'schedule', 'preset' or three integers such as 1,8,8") from err
    return (f, h, w)


@click.command()
@click.option(
    "--model", "model", default="qihoo-t2x-1.1b", show_default=True, help="Preset name or config JSON."
)
@click.option(
    "--resolution",
    "resolution",
    type=int,
    multiple=True,
    help="Square image side in pixels; values after it are taken too: --resolution 256 512 1024 2048.",
)
@click.argument("more_resolutions", nargs=-1, type=int, metavar="[RESOLUTION]...")
@click.option(
    "--frames", default=1, show_default=True, help="Pixel frames (video: 1 + 4k with a causal VAE)."
)
@click.option("--temporal-compression", default=4, show_default=True, help="VAE frames per latent frame.")
@click.option("--batch", default=1, show_default=True, help="Batch size of the forward pass.")
@click.option("--text-len", default=200, show_default=True, help="Caption tokens.")
@click.option(
    "--window",
    default="schedule",
    show_default=True,
    help="'schedule' (the paper's window per resolution), 'preset' (the model's own) or f,h,w.",
)
@click.option("--no-measure", is_flag=True, help="Skip the FlopCounterMode cross-check.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def flops(
    model: str,
    resolution: tuple[int, ...],
    more_resolutions: tuple[int, ...],
    frames: int,
    temporal_compression: int,
    batch: int,
    text_len: int,
    window: str,
    no_measure: bool,
    as_json: bool,
) -> None:
    """GFLOPs of one forward pass by component: PT-DiT vs dense (equal width, equal parameters).

    Also prints the paper's Eq. 4 attention ratio beside the percentages it quotes, and how
    well the analytic count matches FlopCounterMode on the model at the smallest resolution.
    """
    from ptdit_export.flops import flops_report, format_report
    from ptdit_export.model import load_config

    resolutions = list(resolution + more_resolutions) or list(DEFAULT_RESOLUTIONS)
    try:
        cfg = load_config(model)
        report = flops_report(
            cfg,
            resolutions,
            frames=frames,
            batch=batch,
            text_len=text_len,
            window=_parse_window(window),
            temporal_compression=temporal_compression,
            measure=not no_measure,
        )
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


COMMANDS = [flops]
