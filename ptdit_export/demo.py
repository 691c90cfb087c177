"""The demo model's world: a captioned synthetic picture set, a pixel-statistics judge, the preset.

Every picture is one shape (circle, square, triangle) of one colour on a plain background of
another colour, at one of five positions, captioned "a red circle on a blue background, left".
Pictures are drawn on the fly from a seed, so nothing is downloaded. `measure` reads the
attributes back from the pixels alone (the border's dominant colour is the background, the
dominant other colour the foreground, the foreground's centroid the position), which is how
generated pictures are scored against their prompts (`adherence`).

A tenth of the (shape, colour, colour, position) combinations is never shown in training
(`is_held_out`); the adherence check prompts with those. `make_components` builds a fresh
(untrained) demo pipeline, `load_components` the shipped one from presets/demo/.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptdit_export.model import PTDiT, PTDiTConfig
from ptdit_export.model.presets import DEMO_COMPONENTS, DEMO_DIR, PRESETS

log = logging.getLogger(__name__)


# Six colours far apart in RGB; measurement snaps every pixel to the nearest of them.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.70, 0.15),
    "blue": (0.10, 0.20, 0.90),
    "yellow": (0.95, 0.90, 0.10),
    "white": (0.95, 0.95, 0.95),
    "black": (0.05, 0.05, 0.05),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("left", "right", "top", "bottom", "center")
IMAGE_SIZE = 32  # pixels, square
_CENTRE_OFFSET = 0.22  # shape centre sits this fraction of the side away from the middle
_JITTER = 0.05  # uniform jitter of the centre, fraction of the side
_SIZE_RANGE = (0.12, 0.19)  # circle radius (and the other shapes' matching size), fraction of side
_POSITION_THRESHOLD = 0.11  # |centroid offset| beyond this fraction of the side leaves "center"
_MIN_FOREGROUND = 0.01  # fraction of pixels a foreground needs to exist


@dataclass(frozen=True)
class Scene:
    """What one picture shows; position None means "anywhere" (captions may omit it)."""

    shape: str
    foreground: str
    background: str
    position: str | None = None

    def caption(self) -> str:
        text = f"a {self.foreground} {self.shape} on a {self.background} background"
        return f"{text}, {self.position}" if self.position else text


_CAPTION = re.compile(r"^a (\w+) (\w+) on a (\w+) background(?:, (\w+))?$")


def parse_caption(caption: str) -> Scene:
    """The Scene a caption asks for; raises ValueError for text outside the demo's language."""
    match = _CAPTION.match(caption.strip().lower())
    if not match:
        raise ValueError(
            f"{caption!r} is not a demo caption; write 'a <colour> <shape> on a <colour> background"
            f"[, <position>]' with colours {', '.join(COLOURS)}, shapes {', '.join(SHAPES)}, "
            f"positions {', '.join(POSITIONS)}"
        )
    fg, shape, bg, pos = match.groups()
    for word, allowed in ((fg, COLOURS), (bg, COLOURS), (shape, SHAPES), (pos, POSITIONS)):
        if word is not None and word not in allowed:
            raise ValueError(f"{word!r} in {caption!r} is not one of {', '.join(allowed)}")
    if fg == bg:
        raise ValueError(f"{caption!r}: foreground and background colour must differ")
    return Scene(shape, fg, bg, pos)


def all_scenes() -> list[Scene]:
    """Every (shape, foreground, background, position) combination, in a fixed order."""
    return [Scene(s, f, b, p) for s in SHAPES for f in COLOURS for b in COLOURS if f != b for p in POSITIONS]


def is_held_out(scene: Scene) -> bool:
    """About one combination in ten, never shown in training.

    The rule keeps every (shape, fg, bg) triple in training at four of its five positions and
    every (fg, bg, position) at two or three of the three shapes, so a held-out prompt asks
    for a new combination of things each seen many times.
    """
    if scene.position is None:
        return False
    colours = list(COLOURS)
    key = (
        3 * SHAPES.index(scene.shape)
        + colours.index(scene.foreground)
        + 2 * colours.index(scene.background)
        + 4 * POSITIONS.index(scene.position)
    )
    return key % 10 == 0


def training_scenes() -> list[Scene]:
    return [s for s in all_scenes() if not is_held_out(s)]


def held_out_scenes() -> list[Scene]:
    return [s for s in all_scenes() if is_held_out(s)]


# ------------------------------------------------------------------ drawing
def _centre(position: str, rng: np.random.Generator, size: int) -> tuple[float, float]:
    dx, dy = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1), "center": (0, 0)}[position]
    jitter = rng.uniform(-_JITTER, _JITTER, size=2)
    cx = size / 2 + (dx * _CENTRE_OFFSET + jitter[0]) * size
    cy = size / 2 + (dy * _CENTRE_OFFSET + jitter[1]) * size
    return cx, cy


def render(scene: Scene, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """The picture [size, size, 3] float32 in [0, 1]; size and jitter drawn from `rng`.

    Shapes are centred on their centroid (the triangle too), so the measured centroid of a
    clean picture is its requested position.
    """
    position = scene.position or POSITIONS[rng.integers(len(POSITIONS))]
    cx, cy = _centre(position, rng, size)
    r = rng.uniform(*_SIZE_RANGE) * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    u, v = x - cx, y - cy
    if scene.shape == "circle":
        inside = u**2 + v**2 <= r**2
    elif scene.shape == "square":
        half = 0.886 * r  # same area as the circle
        inside = (np.abs(u) <= half) & (np.abs(v) <= half)
    else:  # equilateral triangle, apex up, circumradius R: centroid at the centre
        big = 1.3 * r
        inside = (v <= big / 2) & (np.sqrt(3) * np.abs(u) <= v + big)
    image = np.empty((size, size, 3), np.float32)
    image[:] = COLOURS[scene.background]
    image[inside] = COLOURS[scene.foreground]
    return image


def make_batch(
    rng: np.random.Generator,
    batch: int,
    size: int = IMAGE_SIZE,
    p_no_position: float = 0.2,
    p_empty: float = 0.1,
) -> tuple[np.ndarray, list[str]]:
    """Training pictures [B, 3, H, W] in [0, 1] and captions, from the training combinations.

    With probability `p_no_position` the caption leaves the position out; with `p_empty` it is
    empty (the unconditional caption classifier-free guidance needs).
    """
    pool = training_scenes()
    images, captions = [], []
    for i in rng.integers(len(pool), size=batch):
        scene = pool[i]
        images.append(render(scene, rng, size))
        roll = rng.random()
        if roll < p_empty:
            captions.append("")
        elif roll < p_empty + p_no_position:
            captions.append(Scene(scene.shape, scene.foreground, scene.background).caption())
        else:
            captions.append(scene.caption())
    return np.stack(images).transpose(0, 3, 1, 2), captions


# ---------------------------------------------------------------- measuring
@dataclass(frozen=True)
class Measured:
    """What the pixels show; None where nothing qualifies (no foreground, say)."""

    background: str
    foreground: str | None
    position: str | None
    shape: str | None


def colour_labels(image: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour per pixel: [H, W, 3] -> [H, W]."""
    palette = np.asarray(list(COLOURS.values()), np.float32)  # (K, 3)
    dist = ((image[..., None, :] - palette) ** 2).sum(-1)  # (H, W, K)
    return dist.argmin(-1)


def measure(image: np.ndarray) -> Measured:
    """Background, foreground, position and shape of a picture [H, W, 3] in [0, 1]."""
    names = list(COLOURS)
    labels = colour_labels(np.asarray(image, np.float32))
    h, w = labels.shape
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    bg = Counter(border.tolist()).most_common(1)[0][0]
    others = Counter(labels[labels != bg].tolist())
    if not others or others.most_common(1)[0][1] < _MIN_FOREGROUND * h * w:
        return Measured(names[bg], None, None, None)
    fg = others.most_common(1)[0][0]
    ys, xs = np.nonzero(labels == fg)
    dx = (xs.mean() + 0.5) / w - 0.5  # centroid offset from the middle, fraction of the side
    dy = (ys.mean() + 0.5) / h - 0.5
    if max(abs(dx), abs(dy)) < _POSITION_THRESHOLD:
        position = "center"
    elif abs(dx) >= abs(dy):
        position = "left" if dx < 0 else "right"
    else:
        position = "top" if dy < 0 else "bottom"
    # Shape: an apex-up triangle keeps ~1/4 of its pixels in the top half of its bounding box
    # (circle, square: 1/2); a square fills its box (~1), a circle ~pi/4.
    rows = ys + 0.5 - (ys.min() + ys.max() + 1) / 2  # pixel-centre row offset from the box middle
    top = np.where(rows < 0, 1.0, np.where(rows == 0, 0.5, 0.0)).mean()
    fill = len(xs) / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    shape = "triangle" if top < 0.39 else "square" if fill > 0.96 else "circle"
    return Measured(names[bg], names[fg], position, shape)


def adherence(images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Fraction of pictures [N, H, W, 3] matching their scene, per attribute.

    "colours" needs both colours right; "position" counts only scenes that ask for one;
    "shape" is informational (the bounding-box fill ratio is a rough judge of blurry shapes).
    """
    hits: dict[str, list[bool]] = {
        k: [] for k in ("foreground", "background", "colours", "position", "shape")
    }
    for image, scene in zip(images, scenes):
        got = measure(image)
        hits["foreground"].append(got.foreground == scene.foreground)
        hits["background"].append(got.background == scene.background)
        hits["colours"].append(hits["foreground"][-1] and hits["background"][-1])
        hits["shape"].append(got.shape == scene.shape)
        if scene.position is not None:
            hits["position"].append(got.position == scene.position)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in hits.items()}


# ------------------------------------------------------------ colour fidelity
# The judge snaps pixels to the palette, so a lavender "white" still scores as white. Fidelity
# asks how far the colours drawn are from the palette colours asked for: per picture, the
# per-channel median of the pixels the judge assigns to the background (and to the
# foreground), its RGB distance (0-255 units) from the scene's palette colour; over a set, the
# median and 90th percentile of those distances per role. Goal on the held-out check:
FIDELITY_GOAL = {"median": 20.0, "p90": 40.0}
_MAX_RGB_DISTANCE = 255 * 3**0.5  # what a picture without a foreground scores for it


def colour_errors(image: np.ndarray, scene: Scene) -> tuple[float, float]:
    """(background, foreground) distance in RGB units of the median colour of each region the
    judge finds in a picture [H, W, 3] in [0, 1] from the palette colour `scene` asks for."""
    image = np.asarray(image, np.float32)
    got = measure(image)
    labels, names = colour_labels(image), list(COLOURS)
    errors = []
    for found, wanted in ((got.background, scene.background), (got.foreground, scene.foreground)):
        if found is None:
            errors.append(_MAX_RGB_DISTANCE)
            continue
        median = np.median(image[labels == names.index(found)], axis=0)  # (3,)
        errors.append(float(np.linalg.norm(255 * (median - np.asarray(COLOURS[wanted])))))
    return errors[0], errors[1]


def colour_fidelity(images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Median and 90th percentile over pictures [N, H, W, 3] of `colour_errors`, per role:
    keys background_error_median, background_error_p90, foreground_error_median, ..._p90."""
    errors = np.asarray([colour_errors(image, scene) for image, scene in zip(images, scenes)])  # (N, 2)
    out = {}
    for role, column in (("background", errors[:, 0]), ("foreground", errors[:, 1])):
        out[f"{role}_error_median"] = float(np.median(column))
        out[f"{role}_error_p90"] = float(np.percentile(column, 90))
    return out


def fidelity_met(figures: dict[str, float], margin: float = 0.0) -> bool:
    """Whether `colour_fidelity` figures meet FIDELITY_GOAL (plus `margin` RGB units)."""
    return all(
        figures[f"{role}_error_{stat}"] <= goal + margin
        for role in ("background", "foreground")
        for stat, goal in FIDELITY_GOAL.items()
    )


# --------------------------------------------------------------- components
VOCABULARY = ("<pad>", "</s>", "<unk>", "a", "on", "background", ",", *COLOURS, *SHAPES, *POSITIONS)
MAX_LENGTH = DEMO_COMPONENTS["max_length"]  # tokens per caption; the longest caption has 10 with </s>


def demo_model_config() -> PTDiTConfig:
    """The demo denoiser (the `demo` preset's config; see ptdit_export/model/presets.py)."""
    return PRESETS["demo"].config


def demo_text_config() -> Any:
    """A two-layer T5 v1.1-style encoder (gated GELU, relative positions), width 64."""
    from transformers import T5Config

    return T5Config(
        vocab_size=len(VOCABULARY),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=MAX_LENGTH,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        use_cache=False,
    )


def build_tokenizer() -> Any:
    """A word-level tokenizer over the caption language, T5-style (pad 0, </s> 1, unk 2)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCABULARY)}, unk_token="<unk>"))
    words.normalizer = normalizers.Lowercase()
    words.pre_tokenizer = pre_tokenizers.Whitespace()  # also splits off the comma
    words.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=words,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=MAX_LENGTH,
    )


def save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """save_pretrained, naming the class every transformers version knows."""
    tokenizer.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def space_to_depth(factor: int = 2) -> Any:
    """The exact pixels <-> latents transform of the demo (the export's `SpaceToDepthVAE`)."""
    from ptdit_export.export.vae import SpaceToDepthVAE

    return SpaceToDepthVAE(factor)


@dataclass
class DemoComponents:
    """The demo pipeline in PyTorch: tokenizer, T5 encoder, PT-DiT, space-to-depth, rflow."""

    transformer: PTDiT
    text_encoder: Any  # transformers T5EncoderModel
    tokenizer: Any  # transformers PreTrainedTokenizerFast
    scheduler: dict[str, Any] = field(
        default_factory=lambda: {
            "kind": "rflow",
            "num_train_timesteps": 1000,
            "prediction_type": "flow",
            "use_timestep_transform": False,
        }
    )
    image_size: int = IMAGE_SIZE
    spatial_compression: int = DEMO_COMPONENTS["vae_scale"]

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> (T5 features [B, L, 64], mask [B, L] 1 keep / 0 pad), L = MAX_LENGTH."""
        tokens = self.tokenizer(
            captions, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt"
        )
        out = self.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return out.last_hidden_state, tokens["attention_mask"]

    @torch.no_grad()
    def generate(
        self, prompts: list[str], seed: int | list[int] = 0, steps: int = 30, guidance: float = 4.0
    ) -> np.ndarray:
        """Pictures [B, H, W, 3] in [0, 1], made the way the runtime makes them: its seeded noise
        (prompt i starts from seed + i), its rectified-flow sampler (the release's), guidance
        against the empty caption, the space-to-depth decoder."""
        from ptdit_runtime.configs import SchedulerConfig
        from ptdit_runtime.noise import initial_noise, seeds_for
        from ptdit_runtime.schedulers import make_sampler

        b, f, size = len(prompts), self.spatial_compression, self.image_size
        sampler = make_sampler(SchedulerConfig.from_dict(self.scheduler), steps, size, size)
        x = torch.from_numpy(initial_noise(seeds_for(seed, b), (3 * f * f, 1, size // f, size // f)))
        text, mask = self.encode(list(prompts) + [""] * b)
        for i, t in enumerate(sampler.timesteps):
            out = self.transformer(torch.cat([x, x]), torch.full((2 * b,), float(t)), text, mask)
            cond, uncond = out[:, : out.shape[1] // 2].chunk(2)
            v = uncond + guidance * (cond - uncond)
            x = torch.from_numpy(sampler.step(i, x.numpy(), v.numpy()))
        return space_to_depth(f).decode(x)[:, :, 0].permute(0, 2, 3, 1).numpy()


def make_components(seed: int = 0) -> DemoComponents:
    """A fresh, untrained demo pipeline (what samples/train_demo.py starts from)."""
    from transformers import T5EncoderModel

    torch.manual_seed(seed)
    return DemoComponents(
        transformer=PTDiT(demo_model_config()),
        text_encoder=T5EncoderModel(demo_text_config()),
        tokenizer=build_tokenizer(),
    )


def save_components(components: DemoComponents, folder: Path, notes: dict[str, Any] | None = None) -> None:
    """Write the preset layout (see presets/demo/README.md) in one atomic swap, so a crash leaves
    the previous folder whole; `notes` goes to training.json, an existing README.md is kept."""
    from safetensors.torch import save_file

    from ptdit_export.export.artifacts import atomic_dir

    final = Path(folder)
    with atomic_dir(final) as out:
        if (final / "README.md").is_file():
            shutil.copy2(final / "README.md", out / "README.md")
        (out / "text_encoder").mkdir()
        model = components.transformer
        (out / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "pos_embed.pos_embed"}
        save_file(state, str(out / "model.safetensors"))
        components.text_encoder.save_pretrained(str(out / "text_encoder"), safe_serialization=True)
        save_tokenizer(components.tokenizer, out / "tokenizer")
        save_tokenizer(components.tokenizer, out / "text_encoder")  # a complete T5 folder for export
        _write_json(out / "scheduler" / "scheduler_config.json", scheduler_config(components.scheduler))
        vae = dataclasses.asdict(space_to_depth(components.spatial_compression).config())
        _write_json(out / "vae" / "config.json", vae)
        if notes is not None:
            _write_json(out / "training.json", notes)


def load_components(folder: str | Path = DEMO_DIR) -> DemoComponents:
    """The shipped demo pipeline (or one written by `save_components`), fp32, eval mode."""
    from transformers import AutoTokenizer, T5EncoderModel

    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no demo weights in {folder}; run `python samples/train_demo.py --out {folder}`"
        )
    vae = json.loads((folder / "vae" / "config.json").read_text())
    return DemoComponents(
        transformer=PTDiT.from_pretrained(folder, dtype=torch.float32),
        text_encoder=T5EncoderModel.from_pretrained(str(folder / "text_encoder")).eval(),
        tokenizer=AutoTokenizer.from_pretrained(str(folder / "tokenizer")),
        scheduler=json.loads((folder / "scheduler" / "scheduler_config.json").read_text()),
        spatial_compression=int(vae["spatial_compression"]),
    )


def scheduler_config(data: dict[str, Any]) -> dict[str, Any]:
    """Every field of the runtime's scheduler config, validated."""
    from ptdit_runtime.configs import SchedulerConfig

    return dataclasses.asdict(SchedulerConfig.from_dict(data))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------- checking
def check_adherence(
    draw: Callable[[list[str], list[int], int, float], np.ndarray],
    scenes: list[Scene] | None = None,
    seeds: tuple[int, ...] = (0, 1),
    steps: int = 30,
    guidance: float = 4.0,
    batch: int = 64,
) -> tuple[dict[str, float], np.ndarray]:
    """Generate every held-out scene (default) once per seed and score the pictures.

    `draw(prompts, seeds, steps, guidance)` makes pictures [B, H, W, 3] in [0, 1]: the PyTorch
    pipeline's `DemoComponents.generate`, or `runtime_drawer` over a built engine folder.
    Scene i under seed s starts from the runtime's noise of seed 1000 s + i.

    Returns (rates per attribute as in `adherence` and the `colour_fidelity` figures,
    pictures [N, H, W, 3]).
    """
    scenes = held_out_scenes() if scenes is None else scenes
    todo = [(scene, 1000 * seed + i) for seed in seeds for i, scene in enumerate(scenes)]
    images = []
    for start in range(0, len(todo), batch):
        part = todo[start : start + batch]
        prompts, noise_seeds = [s.caption() for s, _ in part], [n for _, n in part]
        images.append(draw(prompts, noise_seeds, steps, guidance))
    images = np.concatenate(images)
    judged = [s for s, _ in todo]
    rates = {**adherence(images, judged), **colour_fidelity(images, judged)}
    log.info("adherence over %d pictures: %s", len(todo), rates)
    return rates, images


def picture_difference(images: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Pictures [N, H, W, 3] in [0, 1] against reference ones: mean absolute error, relative
    max error (max |a - b| / max |b|), pixels off by more than 0.05, pictures judged the same."""
    diff = np.abs(images - reference)
    return {
        "mean_abs": float(diff.mean()),
        "relative_max": float(diff.max() / np.abs(reference).max()),
        "pixels_off": int((diff.max(-1) > 0.05).sum()),
        "judged_same": sum(measure(a) == measure(b) for a, b in zip(images, reference)),
    }


def runtime_drawer(engine_dir: str | Path, threads: int = 2) -> Callable[..., np.ndarray]:
    """`check_adherence`'s `draw` over a built engine folder, run by ptdit_runtime (ONNX
    Runtime on the CPU) exactly as `ptdit-export generate` runs it."""
    from ptdit_runtime.pipeline import Pipeline

    pipe = Pipeline.from_dir(engine_dir, backend="onnxruntime", provider="cpu", threads=threads)

    def draw(prompts: list[str], seeds: list[int], steps: int, guidance: float) -> np.ndarray:
        out = pipe(
            prompts,
            steps=steps,
            guidance=guidance,
            seed=seeds,
            height=IMAGE_SIZE,
            width=IMAGE_SIZE,
            output="float",
        )
        return np.stack(out.images)

    return draw
