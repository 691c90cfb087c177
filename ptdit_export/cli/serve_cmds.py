"""`ptdit-export triton`, `serve` and `client`: an engine folder on Triton Inference Server."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click


@click.command("triton")
@click.argument("engine_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Model repository to write.",
)
@click.option("--model-name", default="ptdit", show_default=True, help="Triton model name.")
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=None,
    help="max_batch_size in prompts (default: the profile's max batch / 2 for CFG).",
)
@click.option(
    "--preferred-batch",
    type=click.IntRange(min=1),
    default=None,
    help="Dynamic batcher's preferred batch (default: the profile's optimum).",
)
@click.option(
    "--queue-delay-us",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="How long the batcher waits to fill a batch.",
)
@click.option("--batching/--no-batching", default=True, show_default=True, help="Dynamic batching.")
@click.option(
    "--kind",
    type=click.Choice(["auto", "gpu", "cpu"]),
    default="auto",
    show_default=True,
    help="Instances: gpu (one per GPU), cpu; auto: gpu for TensorRT folders.",
)
@click.option("--instances", type=click.IntRange(min=1), default=None, help="N instances of KIND_CPU.")
@click.option(
    "--backend",
    type=click.Choice(["auto", "onnxruntime", "tensorrt", "torch"]),
    default="auto",
    show_default=True,
    help="ptdit_runtime backend in the model.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime threads per instance."
)
@click.option("--png/--no-png", default=True, show_default=True, help="Offer a `png` output.")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Steps when a request names none.",
)
@click.option(
    "--guidance", type=float, default=4.0, show_default=True, help="Guidance when a request names none."
)
@click.option("--link", is_flag=True, help="Symlink the engine folder instead of copying it.")
@click.option("--force", is_flag=True, help="Replace an existing model folder.")
def triton(engine_dir: Path, repo: Path, max_batch: int | None, **opts) -> None:
    """Write a Triton model repository (Python backend) serving ENGINE_DIR."""
    from ptdit_export.serving.repository import triton_repo_from_engine

    try:
        model = triton_repo_from_engine(engine_dir, repo, max_batch_size=max_batch, **opts)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(
        f"wrote {model} (config.pbtxt, 1/model.py, 1/engine); serve it with: ptdit-export serve {repo}"
    )


@click.command("serve")
@click.argument("repo", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface)."
)
@click.option(
    "--tritonserver",
    "binary",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Server binary (default: PATH, then the server kit or nvidia-pytriton).",
)
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for readiness."
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Server log file (default: a temporary file).",
)
@click.option(
    "--install-server",
    is_flag=True,
    help="pip-install the server kit (nvidia-pytriton + NumPy 1.x for its stub, --no-deps, in its own folder) and exit.",
)
def serve(repo: Path | None, binary: Path | None, timeout: float, install_server: bool, **opts) -> None:
    """Run tritonserver on REPO until Ctrl-C."""
    from ptdit_export.serving.server import ServerFailed, TritonServer, install_server_kit

    if install_server:
        try:
            click.echo(f"installed the server kit in {install_server_kit()}")
        except FileNotFoundError as err:
            raise click.ClickException(str(err)) from None
        return
    if repo is None:
        raise click.UsageError(
            "give the model repository: ptdit-export serve REPO (write one with `ptdit-export triton`)"
        )
    try:
        server = TritonServer(repo, binary=binary, **opts)
        click.echo(f"starting {server.binary.path} ({server.binary.source}); log: {server.log_path}")
        server.start(timeout)
    except (FileNotFoundError, ServerFailed) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"tritonserver pid {server.process.pid}")
    click.echo(f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}")
    click.echo("Ctrl-C stops it")
    # Ctrl-C / SIGINT and SIGTERM stop it, also when started in the background of a script:
    # shells start such jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        while server.process.poll() is None:
            time.sleep(1.0)
            if server.heal():  # a killed backend stub: restart the server
                click.echo(
                    f"a backend process died; restarted tritonserver, pid {server.process.pid}", err=True
                )
    except KeyboardInterrupt:
        click.echo("stopping")
    except ServerFailed as err:  # the restart failed
        server.stop()
        raise click.ClickException(str(err)) from None
    code = server.stop()
    tail = server.log_tail()
    if code not in (0, None, -signal.SIGINT):
        if "Exit timeout expired" not in tail:
            raise click.ClickException(f"tritonserver exited with code {code}; its log ends:\n{tail}")
        # clients kept connections open past Triton's exit timeout: stopped all the same
        click.echo(
            f"tritonserver stopped at its exit timeout (code {code}): clients held connections", err=True
        )


@click.command("client")
@click.argument("prompt")
@click.option(
    "--url",
    default="localhost:8000",
    show_default=True,
    help="Server address (HTTP port, or gRPC port with --protocol grpc).",
)
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True)
@click.option("--model", default="ptdit", show_default=True)
@click.option("--negative-prompt", default=None)
@click.option("--seed", type=int, default=None, help="Noise seed (default: the server's, 0).")
@click.option("--steps", type=int, default=None, help="Denoising steps (default: the repository's).")
@click.option("--guidance", type=float, default=None)
@click.option("--height", type=int, default=None)
@click.option("--width", type=int, default=None)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds before giving up.")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("served.png"),
    show_default=True,
    help=".png (or .gif for video) to write.",
)
def client(prompt: str, url: str, protocol: str, model: str, timeout: float, out: Path, **values) -> None:
    """Ask a running server for a picture of PROMPT."""
    from ptdit_export.serving.client import ServingError, generate
    from ptdit_runtime import save

    try:
        image = generate(url, prompt, protocol=protocol, model=model, timeout=timeout, **values)
    except ServingError as err:
        raise click.ClickException(str(err)) from None
    path = save(image, out)
    click.echo(f"wrote {path} ({image.shape[-2]}x{image.shape[-3]} px)")


COMMANDS = [triton, serve, client]
