"""`ptdit-export generate ... --parallel P` under torchrun: the window-sharded torch run.

    torchrun --nproc-per-node P $(which ptdit-export) generate "PROMPT" --parallel P -o x.png

Every rank runs this; rank 0 encodes the prompt, decodes the picture, writes it and prints.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click


def generate_parallel(
    prompt: tuple[str, ...], engine_dir: Path, out: Path, fps: int, zoom: int | None, parts: int, opts: dict
) -> None:
    """The body of `generate --parallel P` (called by cli/generate_cmd.py)."""
    world = os.environ.get("WORLD_SIZE")
    if world is None or int(world) != parts:
        got = f"this process has WORLD_SIZE={world}" if world else "this process was not started by torchrun"
        raise click.UsageError(
            f"--parallel {parts} runs {parts} processes: launch with torchrun --nproc-per-node {parts} "
            f'$(which ptdit-export) generate "PROMPT" --parallel {parts} ({got})'
        )
    if opts.get("backend") not in (None, "auto", "torch"):
        raise click.UsageError(
            "--parallel runs the folder's PyTorch model sharded over the ranks; drop --backend "
            f"{opts['backend']} (or pass --backend torch)"
        )
    from ptdit_export.cli.generate_cmd import output_path
    from ptdit_export.model.presets import load_config
    from ptdit_export.parallel import runtime
    from ptdit_export.parallel.comm import Comm
    from ptdit_export.parallel.sharding import SlabPlan
    from ptdit_runtime import EngineFolder, MissingComponent, check_request

    request = {
        k: opts[k] for k in ("negative_prompt", "steps", "guidance", "seed", "height", "width", "frames")
    }
    # 1. the request and the slab split are checked on every rank before any process group forms
    try:
        folder = EngineFolder(engine_dir)
        checked = check_request(folder, list(prompt), **request)
        cfg = load_config(folder.transformer_config)
        c, f, h, w = checked.latent_shape
        SlabPlan((f, h // cfg.patch_size, w // cfg.patch_size), cfg.window, 0, parts)
    except (MissingComponent, ValueError) as err:
        raise click.ClickException(str(err)) from None
    out = output_path(out, checked.frames)

    # 2. join the job, load, generate; 3. rank 0 writes and reports
    if os.environ.get("RANK", "0") != "0":  # one log for the job: rank 0's
        for name in ("ptdit_export", "ptdit_runtime"):
            logging.getLogger(name).setLevel(logging.WARNING)
    comm = Comm.from_env()
    rank0 = comm.rank == 0
    request = {
        k: opts[k] for k in ("negative_prompt", "steps", "guidance", "seed", "height", "width", "frames")
    }
    try:
        pipe, _ = runtime.load(engine_dir, comm, provider=opts.get("provider"), threads=opts.get("threads"))
        bar = None
        if rank0:
            from tqdm import tqdm

            total = checked.steps * -(-len(prompt) // checked.chunk)
            bar = tqdm(total=total, desc=f"denoising x{parts}", unit="step", leave=False)
        progress = None if bar is None else (lambda done, total: bar.update(done - bar.n))
        result = runtime.generate(pipe, comm, list(prompt), progress=progress, **request)
        if bar is not None:
            bar.close()
    except (MissingComponent, FileNotFoundError, ValueError) as err:
        if rank0:
            raise click.ClickException(str(err)) from None
        raise SystemExit(1) from None
    finally:
        comm.close()
    if not rank0:
        return
    zoom = zoom or (8 if max(checked.width, checked.height) < 128 else 1)
    for path in result.save(out, fps=fps, zoom=zoom):
        click.echo(f"wrote {path}" + (f" (each pixel shown {zoom}x{zoom})" if zoom > 1 else ""))
    click.echo(
        f"torch backend, window-sharded over {parts} {comm.device.type} processes, "
        f"{checked.width}x{checked.height} px, {checked.frames} frame(s), {checked.steps} steps"
    )
    click.echo(result.timings.table())
