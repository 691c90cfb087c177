"""Calibration from the pipeline itself: the real sampler, every step of its schedule.

A diffusion transformer sees different activations at t = 1000 (pure noise) and t = 0 (an
almost clean picture), so calibrating on one timestep under-ranges the rest. `sample_feeds` runs
the exported float graph (ONNX Runtime, CPU) through the runtime's own sampler (its seeded noise,
its timesteps, classifier-free guidance against the empty caption) and records the
transformer's inputs at every step; the quantizer then replays them to collect activation
ranges.

Captions: the demo's training captions for `demo`; for other models the captions of a prompts
file run through a T5 text encoder folder, or random caption embeddings (with a warning).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationSettings:
    """How to calibrate; written into quant.json beside the quantized graph."""

    prompts: int = 8  # captions sampled (each run guided: 2 rows per caption)
    steps: int = 10  # sampler steps per caption; every step is recorded
    guidance: float = 4.0
    seed: int = 0  # picks the captions and the noise
    batch: int = 4  # captions per sampler call
    height: int | None = None  # latent size; None: the model's
    width: int | None = None
    prompts_file: str | None = None  # one caption a line (needs text_encoder for non-demo models)
    text_encoder: str | None = None  # Hugging Face T5 encoder folder

    def __post_init__(self) -> None:
        if self.prompts < 1 or self.steps < 1 or self.batch < 1:
            raise ValueError("calibration needs prompts >= 1, steps >= 1 and batch >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _captions(model_arg: str, settings: CalibrationSettings) -> list[str] | None:
    rng = np.random.default_rng(settings.seed)
    if settings.prompts_file:
        path = Path(settings.prompts_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"prompts file {path} not found; pass a text file with one caption a line"
            )
        lines = [s.strip() for s in path.read_text().splitlines() if s.strip()]
        if not lines:
            raise ValueError(f"prompts file {path} holds no caption; write one caption a line")
        return [lines[i] for i in rng.permutation(len(lines))[: settings.prompts]]
    if model_arg == "demo":
        from ptdit_export import demo

        scenes = demo.training_scenes()
        return [scenes[i].caption() for i in rng.choice(len(scenes), settings.prompts, replace=False)]
    return None


def _encoder(model_arg: str, settings: CalibrationSettings):
    """captions -> (features [B, L, D] float32, mask [B, L] int64), or None."""
    import torch

    if model_arg == "demo" and not settings.text_encoder:
        from ptdit_export import demo

        components = demo.load_components()

        def encode_demo(captions):
            with torch.no_grad():
                feats, mask = components.encode(captions)
            return feats.float().numpy(), mask.numpy().astype(np.int64)

        return encode_demo
    if not settings.text_encoder:
        return None
    from transformers import AutoTokenizer, T5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(settings.text_encoder)
    encoder = T5EncoderModel.from_pretrained(settings.text_encoder).eval()

    def encode(captions):
        tokens = tokenizer(captions, padding="longest", truncation=True, return_tensors="pt")
        with torch.no_grad():
            out = encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return out.last_hidden_state.float().numpy(), tokens["attention_mask"].numpy().astype(np.int64)

    return encode


def _scheduler(model_arg: str) -> dict[str, Any]:
    import json

    from ptdit_export.builder.components import RELEASED_SCHEDULER
    from ptdit_export.model.presets import PRESETS

    folder = PRESETS[model_arg].components.get("scheduler") if model_arg in PRESETS else None
    if folder:
        return json.loads((Path(folder) / "scheduler_config.json").read_text())
    return dict(RELEASED_SCHEDULER)


def ort_denoiser(onnx_path: Path, threads: int | None = None) -> Callable[[dict], np.ndarray]:
    """feeds (float32/int64) -> model_output (float32) through ONNX Runtime's CPU provider,
    casting to the graph's input types (fp16 graphs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    types = {i.name: (np.float16 if i.type == "tensor(float16)" else None) for i in session.get_inputs()}

    def denoise(feeds: dict[str, np.ndarray]) -> np.ndarray:
        cast = {k: (v.astype(types[k]) if types[k] else v) for k, v in feeds.items() if k in types}
        return np.asarray(session.run(None, cast)[0], np.float32)

    return denoise


def sample_feeds(
    denoise: Callable[[dict], np.ndarray],
    config,
    model_arg: str,
    settings: CalibrationSettings,
    vae_scale: int = 8,
) -> list[dict[str, np.ndarray]]:
    """Run the sampler (DENOISE: feeds -> model output) over the calibration captions; returns the
    transformer's feeds, one dict per (caption batch, step), float32/int64."""
    from tqdm import tqdm

    from ptdit_runtime.configs import SchedulerConfig
    from ptdit_runtime.noise import initial_noise
    from ptdit_runtime.schedulers import make_sampler

    cfg = config
    h = settings.height or cfg.sample_size
    w = settings.width or cfg.sample_size
    captions = _captions(model_arg, settings)
    encode = _encoder(model_arg, settings)
    if captions is not None and encode is None:
        raise ValueError("a prompts file needs a text encoder for this model; pass --text-encoder DIR")
    rng = np.random.default_rng(settings.seed)
    width_text = cfg.caption_channels or cfg.hidden_size
    if captions is None:
        log.warning(
            "no calibration captions for %s: using random caption embeddings (pass a prompts file "
            "and a text encoder for representative activation ranges)",
            model_arg,
        )
    sampler = make_sampler(
        SchedulerConfig.from_dict(_scheduler(model_arg)), settings.steps, h * vae_scale, w * vae_scale
    )
    feeds: list[dict[str, np.ndarray]] = []
    batches = range(0, settings.prompts, settings.batch)
    bar = tqdm(total=len(batches) * settings.steps, desc="calibrating", unit="step", leave=False)
    for start in batches:
        b = min(settings.batch, settings.prompts - start)
        if captions is not None:
            text, mask = encode(captions[start : start + b] + [""] * b)
        else:
            n = 16
            text = rng.standard_normal((2 * b, n, width_text), dtype=np.float32)
            text[b:] = 0.0  # the unconditional rows: an empty caption's stand-in
            mask = np.ones((2 * b, n), np.int64)
        seeds = [settings.seed * 100_003 + start + i for i in range(b)]
        x = initial_noise(seeds, (cfg.in_channels, 1, h, w))
        for i, t in enumerate(sampler.timesteps):
            x_in = np.concatenate([x, x]).astype(np.float32)
            t_in = np.full((2 * b,), float(t), np.float32)
            feeds.append(
                {
                    "hidden_states": x_in,
                    "timestep": t_in,
                    "encoder_hidden_states": np.ascontiguousarray(text, np.float32),
                    "encoder_attention_mask": np.ascontiguousarray(mask, np.int64),
                }
            )
            out = denoise(feeds[-1])
            pred = out[:, : cfg.in_channels]
            v = pred[b:] + settings.guidance * (pred[:b] - pred[b:])
            x = sampler.step(i, x, v).astype(np.float32)
            bar.update(1)
    bar.close()
    log.info("calibration: %d captions x %d steps -> %d feeds", settings.prompts, settings.steps, len(feeds))
    return feeds
