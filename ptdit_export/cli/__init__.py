"""`ptdit-export`: thin click commands over the library. Each command lives in its own module."""

from __future__ import annotations

import logging

import click

from ptdit_export import __version__


class Main(click.Group):
    """The one place where library errors become one `Error: ...` line and exit 1 (click's own
    usage errors exit 2); with -vv they keep their traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ValueError, OSError) as err:  # FileNotFoundError and PermissionError are OSErrors
            if ctx.params.get("verbose", 0) >= 2:
                raise
            text = " ".join(str(err).split()) or type(err).__name__
            raise click.ClickException(text) from None


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ptdit-export")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """PT-DiT deployment: model -> ONNX -> engine -> runtime."""
    # ours at INFO (-v: DEBUG); other libraries' log records (onnx_ir) only from -vv
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    for ours in ("ptdit_export", "ptdit_runtime"):
        logging.getLogger(ours).setLevel(level)
    # other libraries' Python warnings (torch.onnx's axis renaming, deprecations) go the same way
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)


def _register() -> None:
    from ptdit_export.cli import (
        bench_cmd,
        build_cmd,
        export_cmd,
        flops_cmd,
        generate_cmd,
        model_cmds,
        serve_cmds,
    )

    for module in (model_cmds, flops_cmd, export_cmd, build_cmd, generate_cmd, bench_cmd, serve_cmds):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
