"""Checking a generation request against an engine folder, before any engine runs.

`check_request` needs only the folder's JSON files; given the loaded transformer engine it
also checks the graph's fixed axes and TensorRT profiles. Every problem found is reported in
one ValueError whose message names the fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ptdit_runtime.engines.base import Engine
from ptdit_runtime.folder import EngineFolder
from ptdit_runtime.noise import seeds_for

OUTPUTS = ("uint8", "float", "latent")
MAX_PIXELS = 16384  # per side: beyond this even the noise would not fit in memory
MAX_FRAMES = 4096
MAX_STEPS = 10000
MAX_GUIDANCE = 100.0  # released models use 4-7; far beyond, latents leave float32's range


@dataclass(frozen=True)
class Request:
    """A checked generation request (sizes in pixels; latent shape per sample)."""

    prompts: tuple[str, ...]
    negatives: tuple[str, ...]
    steps: int
    guidance: float
    seeds: tuple[int, ...]
    height: int
    width: int
    frames: int
    latent_shape: tuple[int, int, int, int]  # (C, F, h, w)
    chunk: int  # prompts per engine batch
    output: str

    @property
    def guided(self) -> bool:
        return self.guidance != 1.0


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_request(
    folder: EngineFolder,
    prompts: Sequence[str] | str | None,
    negative_prompt: Sequence[str] | str | None = None,
    steps: int = 30,
    guidance: float = 4.0,
    seed: int | Sequence[int] = 0,
    height: int | None = None,
    width: int | None = None,
    frames: int | None = None,
    output: str = "uint8",
    batch: int | None = None,
    *,
    engine: Engine | None = None,
    has_text: bool | None = None,
    has_vae: bool | None = None,
    text_length: int | None = None,
) -> Request:
    """Validate a request; `batch` counts prompt embeddings when no text is given.
    has_text / has_vae / text_length default to what the folder holds."""
    has_text = folder.text_encoder_dir is not None if has_text is None else has_text
    has_vae = folder.vae_dir is not None if has_vae is None else has_vae
    if text_length is None and folder.text_config is not None:
        text_length = folder.text_config.max_length
    problems: list[str] = []
    prompts = [prompts] if isinstance(prompts, str) else list(prompts or [])
    n = batch if batch is not None else len(prompts)
    if n < 1:
        raise ValueError("no prompts given: pass one prompt or a list of prompts")
    if not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be strings")
    if isinstance(negative_prompt, str) or negative_prompt is None:
        negatives = [negative_prompt or ""] * n
    else:
        negatives = list(negative_prompt)
        if len(negatives) != n:
            problems.append(f"{len(negatives)} negative prompts for {n} prompts; pass one or one per prompt")
    if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
        problems.append(f"steps must be a positive integer up to {MAX_STEPS}; got {steps!r}")
    if (
        isinstance(guidance, bool)
        or not isinstance(guidance, (int, float, np.floating, np.integer))
        or not math.isfinite(guidance)
        or not 0 <= guidance <= MAX_GUIDANCE
    ):
        problems.append(f"guidance must be a finite number from 0 to {MAX_GUIDANCE:g}; got {guidance!r}")
    seeds = [seed] if _is_int(seed) else seed
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
        seeds = [seeds]
    if not all(_is_int(s) and 0 <= s < 2**63 for s in seeds):
        problems.append(f"seed must be an integer from 0 to 2**63 - 1 (or a list of them); got {seed!r}")
    if output not in OUTPUTS:
        problems.append(f"output {output!r} is not one of {OUTPUTS}")
    elif output != "latent" and not has_vae:
        problems.append(
            f"{folder.root} has no vae_decoder, so it cannot make pictures; export one "
            "(ptdit_export.export.vae.onnx_from_vae) or ask for output='latent'"
        )
    if prompts and not has_text:
        problems.append(
            f"{folder.root} has no text_encoder, so it cannot read prompts; export one "
            "(ptdit_export.export.text_encoder.onnx_from_t5) or pass prompt_embeds"
        )

    # sizes: pixels -> latents, divisibility by VAE x patch x window (None: the profile's optimum)
    if (height is None or width is None) and not folder.export_settings:
        raise ValueError(
            f"{folder.transformer_dir} has no export.json, so the engine's size is unknown; "
            "pass height and width"
        )
    dh, dw, df = folder.default_size()
    height = dh if height is None else height
    width = dw if width is None else width
    frames = df if frames is None else frames
    s = folder.spatial_compression
    wf, mh, mw = folder.latent_multiple
    for name, size, mult in (("height", height, mh), ("width", width, mw)):
        step = mult * s
        if _is_int(size) and size > MAX_PIXELS:
            problems.append(f"{name}={size} is above the runtime's limit of {MAX_PIXELS} pixels")
        elif not _is_int(size) or size < 1 or size % step:
            lo = max(size // step * step, step) if _is_int(size) else step
            problems.append(
                f"{name}={size} must be a positive multiple of {step} pixels (VAE {s} x patch x window); "
                f"nearest valid: {lo} or {lo + step}"
            )
    latent_f = folder.latent_frames(int(frames)) if _is_int(frames) and 1 <= frames <= MAX_FRAMES else 0
    if latent_f < 1:
        problems.append(f"frames must be a positive integer up to {MAX_FRAMES}; got {frames!r}")
    elif latent_f % wf:
        problems.append(
            f"frames={frames} gives {latent_f} latent frames, not a multiple of the temporal window {wf}"
        )
    scheduler = folder.scheduler
    if scheduler.kind == "rflow" and scheduler.use_timestep_transform and latent_f >= 1:
        from ptdit_runtime.schedulers.rflow import frame_factor

        try:
            frame_factor(int(frames))
        except ValueError as err:
            problems.append(str(err))

    chunk = n
    if n > 100_000:
        problems.append(f"{n} prompts in one call; pass at most 100000")
    if not problems:
        guided = guidance != 1.0
        chunk, more = _check_limits(folder, engine, n, guided, latent_f, height // s, width // s, text_length)
        problems += more
    if problems:
        raise ValueError("cannot generate: " + "; ".join(problems))
    return Request(
        prompts=tuple(prompts),
        negatives=tuple(negatives),
        steps=int(steps),
        guidance=float(guidance),
        seeds=tuple(seeds_for(seed, n)),
        height=int(height),
        width=int(width),
        frames=int(frames),
        latent_shape=(folder.latent_channels, latent_f, height // s, width // s),
        chunk=chunk,
        output=output,
    )


def _check_limits(folder, engine, n, guided, f, h, w, text_length) -> tuple[int, list[str]]:
    """Batch chunking and size limits: export.json profiles, the graph's fixed axes, TRT profiles."""
    lim, problems, s = folder.limits, [], folder.spatial_compression
    per_prompt = 2 if guided else 1
    max_batch = lim.batch.max if lim.batch else None
    spec = engine.inputs.get("hidden_states") if engine is not None else None
    profile = engine.profile("hidden_states") if engine is not None else None
    for bound in (
        spec.shape[0] if spec is not None and spec.shape else None,
        profile[2][0] if profile else None,
    ):
        if bound is not None:
            max_batch = bound if max_batch is None else min(max_batch, bound)
    chunk = n if max_batch is None else min(n, max_batch // per_prompt)
    if chunk < 1:
        problems.append(
            f"the engine takes at most batch {max_batch}, but guidance needs {per_prompt} per prompt; "
            "rebuild with a larger --max batch or use guidance 1"
        )
        return 1, problems
    if n % chunk and lim.batch and (n % chunk) * per_prompt < lim.batch.min:
        problems.append(f"the engine needs batch >= {lim.batch.min}; pass prompts in groups of {chunk}")
    for name, value, rng, unit in (("height", h, lim.height, s), ("width", w, lim.width, s)):
        if rng is not None and value not in rng:
            problems.append(
                f"{name} {value * unit} is outside the engine's profile {rng.min * unit}..{rng.max * unit} "
                "pixels; pick a size inside or rebuild with a wider profile"
            )
    if lim.frames is not None and f not in lim.frames:
        problems.append(f"{f} latent frames is outside the engine's profile {lim.frames}; rebuild wider")
    if text_length is not None and lim.text_length is not None and text_length not in lim.text_length:
        problems.append(
            f"the text encoder gives {text_length} tokens but the transformer takes {lim.text_length}; "
            "re-export one of them with matching lengths"
        )
    shape = (chunk * per_prompt, folder.latent_channels, f, h, w)
    if spec is not None and not spec.accepts(shape):
        problems.append(
            f"the transformer graph has the fixed input shape {spec.shape}, not {shape} "
            f"({h * s}x{w * s} px, batch {shape[0]}); re-export with --dynamic or at these sizes"
        )
    if profile is not None:
        lo, _, hi = profile
        if any(v < a or v > b for v, a, b in zip(shape, lo, hi)):
            problems.append(
                f"hidden_states {shape} is outside the TensorRT profile {lo}..{hi}; rebuild wider"
            )
    return chunk, problems
