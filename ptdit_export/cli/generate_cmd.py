"""`ptdit-export generate`: prompts -> pictures with the runtime, over an engine folder."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import click

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")


def output_path(out: Path, frames: int) -> Path:
    """OUT as given, or with .png (one frame) / .gif (video) when it has no suffix."""
    if not out.suffix:
        return out.with_suffix(".png" if frames == 1 else ".gif")
    suffix = out.suffix.lower()
    if suffix not in (".png", ".gif", ".mp4"):
        raise click.BadParameter(f"{out}: write .png, .gif or .mp4", param_hint="-o/--out")
    if suffix == ".png" and frames > 1:
        raise click.BadParameter(
            f"{out}: {frames} frames do not fit a PNG; write .gif or .mp4", param_hint="-o"
        )
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise click.BadParameter(
            f"{out}: MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg); or write .gif", param_hint="-o"
        )
    return out


@click.command("generate")
@click.argument("prompt", nargs=-1, required=True)
@click.option(
    "--engine-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Engine folder written by `ptdit-export export/build` (default: the folder a bare `build` writes).",
)
@click.option("--steps", type=int, default=30, show_default=True, help="Denoising steps.")
@click.option("--guidance", type=float, default=4.0, show_default=True, help="Classifier-free guidance.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed (prompt i uses seed + i).")
@click.option("--height", type=int, default=None, help="Pixels (default: the engine profile's optimum).")
@click.option("--width", type=int, default=None, help="Pixels (default: the engine profile's optimum).")
@click.option("--frames", type=int, default=None, help="Frames for video models (default 1).")
@click.option("--negative-prompt", default=None, help="What guidance steers away from (default: empty).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option(
    "--provider",
    type=click.Choice(["cpu", "cuda"]),
    default=None,
    help="ONNX Runtime provider (default: CUDA when available).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="torch backend: where the transformer runs (cuda: fused kernels, CUDA graphs).",
)
@click.option("--threads", type=int, default=None, help="ONNX Runtime intra-op threads.")
@click.option("--cuda-graph", is_flag=True, help="TensorRT: replay CUDA graphs for repeated shapes.")
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=None,
    help="Window-sharded PyTorch run over P processes (torchrun --nproc-per-node P); docs/parallel.md.",
)
@click.option("--fps", type=int, default=8, show_default=True, help="Frames per second of .gif/.mp4.")
@click.option(
    "--zoom",
    type=click.IntRange(min=1),
    default=None,
    help="Enlarge each pixel N x N in the written file (default: 8 below 128 px, else 1).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("generated.png"),
    show_default=True,
    help="Picture to write (.png, .gif or .mp4); several prompts add _000, _001, ...",
)
def generate(
    prompt: tuple[str, ...],
    engine_dir: Path,
    out: Path,
    fps: int,
    zoom: int | None,
    parallel: int | None,
    **opts,
) -> None:
    """Generate pictures for PROMPT (one or more) with an engine folder, and time each stage."""
    if engine_dir is None:
        from ptdit_export.cli.build_cmd import DEFAULT_OUT
        from ptdit_export.model.presets import default_model

        engine_dir = DEFAULT_OUT / default_model()
    if parallel:
        from ptdit_export.parallel.cli import generate_parallel

        return generate_parallel(prompt, engine_dir, out, fps, zoom, parallel, opts)
    from tqdm import tqdm

    from ptdit_runtime import EngineFolder, MissingComponent, Pipeline, check_request

    request = dict(
        negative_prompt=opts["negative_prompt"],
        steps=opts["steps"],
        guidance=opts["guidance"],
        seed=opts["seed"],
        height=opts["height"],
        width=opts["width"],
        frames=opts["frames"],
    )
    # 1. everything the folder's JSON files can tell is checked before any engine loads
    try:
        folder = EngineFolder(engine_dir)
        checked = check_request(folder, list(prompt), **request)
    except (MissingComponent, ValueError) as err:
        raise click.ClickException(str(err)) from None
    out = output_path(out, checked.frames)
    for i, (n, unknown) in enumerate(_token_report(folder, prompt)):
        if n > folder.text_config.max_length:
            click.echo(
                f"warning: prompt {i + 1} has {n} tokens; the text encoder takes "
                f"{folder.text_config.max_length}, the rest is cut off",
                err=True,
            )
        if unknown:
            click.echo(
                f"warning: prompt {i + 1}: the tokenizer does not know {', '.join(map(repr, unknown))} "
                "(each is read as the unknown token)",
                err=True,
            )

    # 2. load, 3. generate with a progress bar, 4. write and report
    logging.getLogger("ptdit_runtime.text").setLevel(logging.ERROR)  # truncation was reported above
    try:
        pipe = Pipeline.from_dir(
            engine_dir,
            backend=opts["backend"],
            provider=opts["provider"],
            threads=opts["threads"],
            cuda_graph=opts["cuda_graph"],
            torch_device=opts["device"],
        )
    except (MissingComponent, RuntimeError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    total = checked.steps * -(-len(prompt) // checked.chunk)
    with tqdm(total=total, desc="denoising", unit="step", leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)  # tqdm redraws at most every 0.1 s

        try:
            result = pipe(list(prompt), progress=progress, **request)
        except ValueError as err:
            raise click.ClickException(str(err)) from None
    zoom = zoom or (8 if max(checked.width, checked.height) < 128 else 1)
    for path in result.save(out, fps=fps, zoom=zoom):
        click.echo(f"wrote {path}" + (f" (each pixel shown {zoom}x{zoom})" if zoom > 1 else ""))
    size = f"{checked.width}x{checked.height} px"
    click.echo(
        f"{pipe.transformer.backend} backend, {size}, {checked.frames} frame(s), {checked.steps} steps"
    )
    click.echo(result.timings.table())


def _token_report(folder, prompts) -> list[tuple[int, list[str]]]:
    """Per prompt: tokens before truncation, and the words the vocabulary lacks."""
    if folder.tokenizer_dir is None or folder.text_config is None:
        return []
    from ptdit_runtime.text import Tokenizer

    tokenizer = Tokenizer(folder.tokenizer_dir, folder.text_config.max_length)
    return list(zip(tokenizer.count(list(prompts)), tokenizer.unknown_words(list(prompts))))


COMMANDS = [generate]
