"""`ptdit-export generate`: prompts -> pictures with the runtime, over an engine folder.

Everything the options and the folder's JSON files can tell is checked before any engine
loads: the request (sizes, steps, guidance), the output path (writable, right suffix, zoom),
and the folder against its manifest. Bad options exit 2 (click usage errors); library errors
(ValueError, OSError) propagate to `ptdit_export.cli.Main`, which prints one `Error:` line
and exits 1 (a traceback with -vv).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import click

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
MAX_FPS = 1000  # as ptdit_runtime.media.MAX_FPS (not imported here: the CLI loads without numpy)


def output_path(out: Path, frames: int, latent: bool = False) -> Path:
    """OUT as given, or with .png (one frame) / .gif (video) / .npy (latents) when it has no suffix."""
    if latent:
        if not out.suffix:
            return out.with_suffix(".npy")
        if out.suffix.lower() != ".npy":
            raise click.BadParameter(f"{out}: --output latent writes a .npy file", param_hint="-o/--out")
        return out
    if not out.suffix:
        return out.with_suffix(".png" if frames == 1 else ".gif")
    suffix = out.suffix.lower()
    if suffix == ".npy":
        raise click.BadParameter(f"{out}: .npy holds latents; add --output latent", param_hint="-o/--out")
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


def read_embeds(path: Path, option: str):
    """(features [B, L, D] float32, mask [B, L] int64) from a .npy (features; every token real)
    or a .npz with arrays "features" and "mask"."""
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            features, mask = data, None
        else:
            with data:
                if "features" not in data.files:
                    raise click.BadParameter(
                        f"{path} has arrays {data.files}; a .npz needs 'features' (and 'mask')",
                        param_hint=option,
                    )
                features = data["features"]
                mask = data["mask"] if "mask" in data.files else None
    except (OSError, ValueError, EOFError) as err:
        raise click.BadParameter(
            f"{path} is not a .npy/.npz file NumPy can read ({err})", param_hint=option
        ) from None
    if features.ndim != 3 or not np.issubdtype(features.dtype, np.number):
        raise click.BadParameter(
            f"{path}: features of shape {features.shape} ({features.dtype}); they must be numbers [B, L, D]",
            param_hint=option,
        )
    if mask is None:
        mask = np.ones(features.shape[:2], np.int64)
    return features.astype(np.float32), mask


@click.command("generate")
@click.argument("prompt", nargs=-1)
@click.option(
    "--engine-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Engine folder written by `ptdit-export build` (default: the folder a bare `build` writes).",
)
@click.option("--steps", type=int, default=30, show_default=True, help="Denoising steps.")
@click.option("--guidance", type=float, default=4.0, show_default=True, help="Classifier-free guidance.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed (prompt i uses seed + i).")
@click.option("--height", type=int, default=None, help="Pixels (default: the engine profile's optimum).")
@click.option("--width", type=int, default=None, help="Pixels (default: the engine profile's optimum).")
@click.option("--frames", type=int, default=None, help="Frames for video models (default 1).")
@click.option("--negative-prompt", default=None, help="What guidance steers away from (default: empty).")
@click.option(
    "--embeds",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Prompt embeddings instead of PROMPT (folders without a text encoder): .npy features "
    "[B, L, D], or .npz with 'features' and 'mask'.",
)
@click.option(
    "--negative-embeds",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Embeddings guidance steers away from, shaped like --embeds (needed unless --guidance 1).",
)
@click.option(
    "--output",
    "kind",
    type=click.Choice(["picture", "latent"]),
    default="picture",
    show_default=True,
    help="latent: write the final latents to -o NAME.npy (folders without a VAE decoder).",
)
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
@click.option(
    "--fps",
    type=click.IntRange(1, MAX_FPS),
    default=8,
    show_default=True,
    help="Frames per second of .gif/.mp4.",
)
@click.option(
    "--zoom",
    type=click.IntRange(min=1),
    default=None,
    help="Enlarge each pixel N x N in the written file (default: 8 below 128 px, else 1).",
)
@click.option(
    "--verify-files",
    is_flag=True,
    help="Check every file's sha256 against the manifest before loading (default: sizes only).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("generated.png"),
    show_default=True,
    help="Picture to write (.png, .gif or .mp4), or .npy with --output latent; several prompts add _000, ...",
)
def generate(
    prompt: tuple[str, ...],
    engine_dir: Path | None,
    out: Path,
    fps: int,
    zoom: int | None,
    kind: str,
    embeds: Path | None,
    negative_embeds: Path | None,
    verify_files: bool,
    parallel: int | None,
    **opts,
) -> None:
    """Generate pictures for PROMPT (one or more) with an engine folder, and time each stage."""
    from ptdit_runtime import EngineFolder, Pipeline, check_request
    from ptdit_runtime.atomic import check_writable
    from ptdit_runtime.engines.ort import check_threads
    from ptdit_runtime.media import check_zoom_fps

    # 1. options that need no folder
    if prompt and embeds is not None:
        raise click.UsageError("pass PROMPT or --embeds, not both")
    if not prompt and embeds is None:
        raise click.UsageError("give a PROMPT (or --embeds FILE.npy for a folder without a text encoder)")
    try:
        check_threads(opts["threads"])
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--threads") from None
    cond = read_embeds(embeds, "--embeds") if embeds is not None else None
    uncond = read_embeds(negative_embeds, "--negative-embeds") if negative_embeds is not None else None
    if cond is not None and opts["guidance"] != 1.0 and uncond is None:
        raise click.UsageError("guidance with --embeds needs --negative-embeds FILE (or pass --guidance 1)")

    # 2. the folder (manifest, components, JSON files) and the request, before any engine loads
    engine_dir = _engine_dir(engine_dir)
    if parallel:
        if cond is not None or kind == "latent":
            raise click.UsageError(
                "--parallel takes prompts and writes pictures (no --embeds, --output latent)"
            )
        from ptdit_export.parallel.cli import generate_parallel

        return generate_parallel(prompt, engine_dir, out, fps, zoom, parallel, opts)
    verify = "full" if verify_files else "size"
    folder = EngineFolder(engine_dir, verify=verify)  # library errors: one `Error:` line (cli.Main)
    latent = kind == "latent"
    _check_components(folder, bool(prompt), latent)
    request = dict(
        negative_prompt=opts["negative_prompt"],
        steps=opts["steps"],
        guidance=opts["guidance"],
        seed=opts["seed"],
        height=opts["height"],
        width=opts["width"],
        frames=opts["frames"],
        output="latent" if latent else "uint8",
    )
    try:
        batch = None if cond is None else len(cond[0])
        checked = check_request(folder, list(prompt) or None, batch=batch, **request)
    except ValueError as err:
        raise click.UsageError(str(err)) from None

    # 3. the output: suffix, zoom, and a writable folder
    out = output_path(out, checked.frames, latent)
    zoom = zoom or (8 if max(checked.width, checked.height) < 128 else 1)
    try:
        check_zoom_fps(checked.height, checked.width, zoom, fps)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--zoom/--fps") from None
    check_writable(out)
    _warn_about_text(folder, prompt, opts["negative_prompt"] if checked.guided else None)

    # 4. load, 5. generate with a progress bar, 6. write and report
    logging.getLogger("ptdit_runtime.text").setLevel(logging.ERROR)  # truncation was reported above
    try:
        pipe = Pipeline.from_dir(
            engine_dir,
            backend=opts["backend"],
            provider=opts["provider"],
            threads=opts["threads"],
            cuda_graph=opts["cuda_graph"],
            torch_device=opts["device"],
            verify="size",  # hashes (--verify-files) were checked in 2.; sizes again in case of a swap
        )
    except RuntimeError as err:  # a backend or provider this machine lacks
        raise click.ClickException(str(err)) from None
    result = _run(pipe, checked, list(prompt), cond, uncond, request)
    paths = [result.save_latents(out)] if latent else result.save(out, fps=fps, zoom=zoom)
    for path in paths:
        click.echo(
            f"wrote {path}" + (f" (each pixel shown {zoom}x{zoom})" if zoom > 1 and not latent else "")
        )
    size = f"{checked.width}x{checked.height} px"
    click.echo(
        f"{pipe.transformer.backend} backend, {size}, {checked.frames} frame(s), {checked.steps} steps"
    )
    click.echo(result.timings.table())


def _engine_dir(engine_dir: Path | None) -> Path:
    if engine_dir is not None:
        return engine_dir
    from ptdit_export.cli.build_cmd import DEFAULT_OUT
    from ptdit_export.model.presets import default_model

    default = DEFAULT_OUT / default_model()
    if not default.is_dir():
        raise click.ClickException(
            f"no engine folder at {default} (the default): build it with `ptdit-export build`, "
            "or pass --engine-dir DIR"
        )
    return default


def _check_components(folder, has_prompts: bool, latent: bool) -> None:
    """CLI hints for folders without a text encoder or a VAE decoder."""
    problems = []
    if has_prompts and folder.text_encoder_dir is None:
        problems.append(
            f"{folder.root} has no text encoder, so it cannot read prompts: rebuild it with "
            "`ptdit-export build --text-encoder DIR` (a Hugging Face T5 folder) or pass --embeds FILE.npy"
        )
    if not latent and folder.vae_dir is None:
        problems.append(
            f"{folder.root} has no VAE decoder, so it cannot make pictures: rebuild it with "
            "`ptdit-export build --vae space-to-depth:S` (or a diffusers VAE folder) or pass "
            "--output latent -o latents.npy"
        )
    if problems:
        raise click.UsageError("; ".join(problems))


def _run(pipe, checked, prompts, cond, uncond, request):
    from tqdm import tqdm

    n = len(prompts) if prompts else len(cond[0])
    total = checked.steps * -(-n // checked.chunk)
    with tqdm(total=total, desc="denoising", unit="step", leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)  # tqdm redraws at most every 0.1 s

        return pipe(prompts or None, progress=progress, prompt_embeds=cond, negative_embeds=uncond, **request)


def _warn_about_text(folder, prompts, negative: str | None) -> None:
    """Warn about prompts (and the negative prompt) longer than the encoder takes, and unknown words."""
    if folder.tokenizer_dir is None or folder.text_config is None or not prompts:
        return
    from ptdit_runtime.text import Tokenizer

    limit = folder.text_config.max_length
    tokenizer = Tokenizer(folder.tokenizer_dir, limit)
    texts = list(prompts) + ([negative] if negative else [])
    names = [f"prompt {i + 1}" for i in range(len(prompts))] + ["the negative prompt"] * bool(negative)
    for name, n, unknown in zip(names, tokenizer.count(texts), tokenizer.unknown_words(texts)):
        if n > limit:
            click.echo(
                f"warning: {name} has {n} tokens; the text encoder takes {limit}, the rest is cut off",
                err=True,
            )
        if unknown:
            click.echo(
                f"warning: {name}: the tokenizer does not know {', '.join(map(repr, unknown))} "
                "(each is read as the unknown token)",
                err=True,
            )


COMMANDS = [generate]
