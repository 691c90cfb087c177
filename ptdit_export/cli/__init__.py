"""`ptdit-export`: thin click commands over the library. Each command lives in its own module."""

from __future__ import annotations

import logging
import os
import sys

import click

from ptdit_export import __version__

OURS = ("ptdit_export", "ptdit_runtime")
# other libraries' loggers with handlers of their own, which the root handler's filter cannot
# reach: torch's exporter ("torchvision is not installed. Skipping torchvision::nms", four lines)
OWN_HANDLERS = ("torch.onnx._internal",)


class OursOrErrors(logging.Filter):
    """Our records at the level -v sets; other libraries' only from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name.split(".", 1)[0] in OURS


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
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug, and other libraries').")
def main(verbose: int) -> None:
    """PT-DiT deployment: model -> ONNX -> engine -> runtime."""
    configure_logging(verbose)


def configure_logging(verbose: int) -> None:
    """Ours at INFO (-v: DEBUG). Other libraries' log records, Python warnings and progress bars
    (transformers' "Loading weights") only with -vv."""
    everything = verbose >= 2
    logging.basicConfig(
        level=logging.DEBUG if everything else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        for f in [f for f in handler.filters if isinstance(f, OursOrErrors)]:
            handler.removeFilter(f)
        if not everything:
            handler.addFilter(OursOrErrors())
    for ours in OURS:
        logging.getLogger(ours).setLevel(logging.WARNING - 10 * min(verbose + 1, 2))
    for name in OWN_HANDLERS:
        logging.getLogger(name).setLevel(logging.NOTSET if everything else logging.ERROR)
    # Python warnings (torch.onnx's axis renaming, deprecations) go the same way
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if everything else logging.ERROR)
    if not everything:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub loads
        if "transformers" in sys.modules:  # already loaded (an app or a test calling main)
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()


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
