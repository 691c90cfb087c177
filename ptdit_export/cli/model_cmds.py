"""`ptdit-export presets`: the named configurations and their sizes."""

from __future__ import annotations

import json

import click


def preset_rows() -> list[dict]:
    """One row per preset; parameters counted from the config (no model is built, no torch)."""
    from ptdit_export.model.presets import PRESETS, parameter_count

    rows = []
    for name, preset in PRESETS.items():
        c = preset.config
        rows.append(
            dict(
                name=name,
                parameters=parameter_count(c),
                layers=c.num_layers,
                hidden=c.hidden_size,
                heads=c.num_heads,
                window=list(c.compress_ratios),
                proxy_window=list(c.proxy_compress_ratios),
                about=preset.about,
            )
        )
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def presets(as_json: bool) -> None:
    """List the model presets with their parameter counts."""
    rows = preset_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'preset':<16} {'params':>9} {'layers':>6} {'hidden':>6} {'window':>9} {'proxy':>9}  about")
    for r in rows:
        win = "x".join(map(str, r["window"]))
        prox = "x".join(map(str, r["proxy_window"]))
        size = f"{r['parameters'] / 1e6:>8.1f}M"
        shape = f"{r['layers']:>6} {r['hidden']:>6} {win:>9} {prox:>9}"
        click.echo(f"{r['name']:<16} {size} {shape}  {r['about']}")


COMMANDS = [presets]
