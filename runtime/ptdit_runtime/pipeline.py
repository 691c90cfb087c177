"""Pipeline: prompts -> text features -> denoising loop on the transformer engine -> VAE -> pixels.

    pipe = Pipeline.from_dir("engines/tiny")             # load once
    out = pipe(["a red circle"], steps=30, guidance=4.0)  # generate many times
    out.images[0]                                         # uint8 [H, W, 3] ([F, H, W, 3] for video)
    print(out.timings.table())

Classifier-free guidance runs the conditional and unconditional halves as one batch
[cond_1..cond_B, uncond_1..uncond_B] (the release's order); the prediction is the first
in_channels output channels, guided as u + g * (c - u). guidance == 1 runs the conditional
half alone. Prompts beyond the engine's batch limit are processed in chunks. Every request
is checked against the engine folder before any work starts, and the folder against its
manifest when it is loaded. Non-finite numbers stop a generation (NonFiniteError) instead of
becoming a black picture.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptdit_runtime.engines import Engine, load_engine, resolve_backend
from ptdit_runtime.folder import EngineFolder
from ptdit_runtime.manifest import FolderError, read_manifest
from ptdit_runtime.media import check_zoom_fps, save, save_latents, to_uint8
from ptdit_runtime.noise import initial_noise
from ptdit_runtime.request import Request, check_request
from ptdit_runtime.schedulers import make_sampler
from ptdit_runtime.text import TextEncoder, Tokenizer
from ptdit_runtime.timing import Timings
from ptdit_runtime.vae import VaeDecoder

log = logging.getLogger(__name__)

TEXT_INPUTS = ("encoder_hidden_states", "encoder_attention_mask")


LOAD_ATTEMPTS = 3


def _current_manifest(path) -> dict | None:
    try:
        return read_manifest(path)
    except (OSError, ValueError):
        return None


class NonFiniteError(ValueError):
    """NaN or infinity in embeddings or latents: the result would be garbage."""


@dataclass
class PipelineOutput:
    images: list[np.ndarray]  # one per prompt: uint8 [H, W, 3] / [F, H, W, 3], or float in [0, 1]
    latents: np.ndarray  # float32 [B, C, F, h, w], final latents in the denoiser's space
    timings: Timings

    def save(self, path: str | Path, fps: int = 8, zoom: int = 1) -> list[Path]:
        """Write every picture: `path` as given for one prompt, with _000, _001, ... for several;
        `zoom` enlarges each pixel to zoom x zoom (nearest neighbour)."""
        path = Path(path)
        if not self.images:
            raise ValueError("no pictures to save (output='latent'); use save_latents(PATH.npy)")
        check_zoom_fps(*self.images[0].shape[-3:-1], zoom, fps)
        if len(self.images) == 1:
            return [save(self.images[0], path, fps, zoom)]
        return [
            save(im, path.with_name(f"{path.stem}_{i:03d}{path.suffix}"), fps, zoom)
            for i, im in enumerate(self.images)
        ]

    def save_latents(self, path: str | Path) -> Path:
        """Write the final latents [B, C, F, h, w] float32 to PATH (.npy), atomically."""
        return save_latents(self.latents, path)


class Pipeline:
    def __init__(
        self,
        folder: EngineFolder,
        transformer: Engine,
        text_encoder: TextEncoder | None = None,
        vae: VaeDecoder | None = None,
    ):
        self.folder, self.transformer = folder, transformer
        self.text_encoder, self.vae = text_encoder, vae
        self.scheduler = folder.scheduler
        self.output_name = (
            "model_output" if "model_output" in transformer.outputs else next(iter(transformer.outputs))
        )

    @classmethod
    def from_dir(
        cls,
        path: str | Path,
        backend: str = "auto",
        provider: str | None = None,
        *,
        device_id: int = 0,
        threads: int | None = None,
        cuda_graph: bool = False,
        plugin_library: str | None = None,
        torch_device: str = "cpu",
        verify: str = "size",
    ) -> Pipeline:
        """Load every component of an engine folder.

        backend: "auto" | "onnxruntime" | "tensorrt" | "torch" for the transformer; the text
        encoder and the VAE always run on ONNX Runtime (`provider`: "cpu" | "cuda"; None picks
        CUDA when available). verify: "size" (every file the manifest lists is there with its
        size), "full" (and its sha256), "none" (no manifest needed); see EngineFolder.
        """
        from ptdit_runtime.engines.ort import check_threads, resolve_provider

        check_threads(threads)
        options = dict(
            backend=backend, provider=resolve_provider(provider), device_id=device_id, threads=threads,
            cuda_graph=cuda_graph, plugin_library=plugin_library, torch_device=torch_device,
        )  # fmt: skip
        # a build swaps a new folder in with one rename: if that happened while we were loading
        # (the manifest read after loading differs from the one read before), load again
        for _ in range(LOAD_ATTEMPTS):
            folder = EngineFolder(path, verify=verify)
            pipe = cls._load(folder, **options)
            if verify == "none" or _current_manifest(path) == folder.manifest:
                return pipe
            pipe.close()
            log.info("%s was replaced while loading; loading it again", path)
        raise FolderError(f"{path} kept changing while loading (a build running?); try again when it is done")

    @classmethod
    def _load(cls, folder: EngineFolder, backend, provider, device_id, threads, cuda_graph, plugin_library,
              torch_device) -> Pipeline:  # fmt: skip
        backend = resolve_backend(folder.transformer_dir, backend)
        options = {
            "onnxruntime": {"provider": provider, "device_id": device_id, "threads": threads},
            "tensorrt": {"device_id": device_id, "cuda_graph": cuda_graph, "plugin_library": plugin_library},
            "torch": {"device": torch_device},
            "ascend": {"device_id": device_id},
        }[backend]
        transformer = load_engine(folder.transformer_dir, backend, **options)
        side = {"provider": provider, "device_id": device_id, "threads": threads}
        text = None
        if folder.text_encoder_dir:
            cfg = folder.text_config
            engine = load_engine(folder.text_encoder_dir, "onnxruntime", **side)
            text = TextEncoder(engine, Tokenizer(folder.tokenizer_dir, cfg.max_length), cfg)
        vae = (
            VaeDecoder(load_engine(folder.vae_dir, "onnxruntime", **side), folder.vae_config)
            if folder.vae_dir
            else None
        )
        log.info(
            "loaded %s: transformer on %s, text encoder %s, VAE %s",
            folder.root, backend, bool(text), bool(vae),
        )  # fmt: skip
        return cls(folder, transformer, text, vae)

    # -------------------------------------------------------------- checking
    def check(
        self,
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
    ) -> Request:
        """Validate a request against the folder and the loaded engines (see `check_request`)."""
        text = self.text_encoder
        return check_request(
            self.folder, prompts, negative_prompt, steps, guidance, seed, height, width, frames, output,
            batch, engine=self.transformer, has_text=text is not None, has_vae=self.vae is not None,
            text_length=text.config.max_length if text else None,
        )  # fmt: skip

    # ---------------------------------------------------------- generation
    def __call__(
        self,
        prompts: Sequence[str] | str | None = None,
        negative_prompt: Sequence[str] | str | None = None,
        steps: int = 30,
        guidance: float = 4.0,
        seed: int | Sequence[int] = 0,
        height: int | None = None,
        width: int | None = None,
        frames: int | None = None,
        output: str = "uint8",
        progress: Callable[[int, int], None] | None = None,
        prompt_embeds: tuple[np.ndarray, np.ndarray] | None = None,
        negative_embeds: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> PipelineOutput:
        """Generate one picture per prompt. `prompt_embeds`/`negative_embeds`: (features [B, L, D],
        mask [B, L]) instead of text, for folders without a text encoder."""
        start = time.perf_counter()
        batch = None
        if prompt_embeds is not None:
            if prompts:
                raise ValueError("pass prompts or prompt_embeds, not both")
            prompt_embeds = self._check_embeds(prompt_embeds, "prompt_embeds")
            batch = len(prompt_embeds[0])
            if guidance != 1.0:
                if negative_embeds is None:
                    raise ValueError("guidance with prompt_embeds needs negative_embeds (features, mask)")
                negative_embeds = self._check_embeds(negative_embeds, "negative_embeds", prompt_embeds)
        req = self.check(
            prompts, negative_prompt, steps, guidance, seed, height, width, frames, output, batch
        )
        n = batch if batch is not None else len(req.prompts)
        timings, latents, pictures = Timings(), [], []
        chunks = [range(i, min(i + req.chunk, n)) for i in range(0, n, req.chunk)]
        for k, idx in enumerate(chunks):
            t0 = time.perf_counter()
            if prompt_embeds is not None:
                embeds, mask = self._stack_embeds(prompt_embeds, negative_embeds, idx, req.guided)
            else:
                embeds, mask = self.encode(
                    [req.prompts[i] for i in idx], [req.negatives[i] for i in idx], req.guided, idx.start
                )
            timings.text_encoder += time.perf_counter() - t0
            noise = initial_noise([req.seeds[i] for i in idx], req.latent_shape)
            report = None if progress is None else _offset_progress(progress, k, len(chunks))
            z = self.denoise(
                noise,
                embeds,
                mask,
                req.steps,
                req.guidance,
                req.height,
                req.width,
                req.frames,
                timings,
                report,
            )
            latents.append(z)
            if req.output != "latent":
                t0 = time.perf_counter()
                images = self.vae(z)
                timings.vae += time.perf_counter() - t0
                pictures += list(
                    to_uint8(images) if req.output == "uint8" else images.transpose(0, 2, 3, 4, 1)
                )
        if pictures and req.frames == 1:
            pictures = [p[0] for p in pictures]
        timings.total = time.perf_counter() - start
        return PipelineOutput(pictures, np.concatenate(latents), timings)

    def encode(
        self, prompts: list[str], negatives: list[str], guided: bool, first: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Text features [B or 2B, L, D] and mask, conditional rows first (`first`: the index
        of prompts[0] in the call, for warnings)."""
        labels = [f"prompt {first + i}" for i in range(len(prompts))]
        if guided:
            labels += [f"negative prompt {first + i}" for i in range(len(negatives))]
        features, mask = self.text_encoder(prompts + negatives if guided else prompts, labels)
        if not np.isfinite(features).all():
            raise NonFiniteError(
                "the text encoder gave NaN or infinite embeddings; its model.onnx may be damaged "
                f"(check with `ptdit-export verify {self.folder.root} --files`) or run in a precision "
                "too narrow for it (rebuild it in fp32)"
            )
        return features, mask

    def _check_embeds(self, pair, name: str, like=None) -> tuple[np.ndarray, np.ndarray]:
        """(features [B, L, D] finite, mask [B, L] of 0/1) matching the transformer's width."""
        try:
            features, mask = pair
            features = np.asarray(features, dtype=np.float32)
            mask = np.asarray(mask)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a pair (features [B, L, D], mask [B, L]) of arrays") from None
        d = self.folder.caption_channels
        if features.ndim != 3 or features.shape[0] < 1 or features.shape[2] != d:
            raise ValueError(f"{name} features have shape {features.shape}; this engine takes [B, L, {d}]")
        if mask.shape != features.shape[:2] or not np.isin(mask, (0, 1)).all():
            raise ValueError(
                f"{name} mask has shape {mask.shape}; it must be [B, L] = {features.shape[:2]} of 0/1"
            )
        if like is not None and features.shape[:2] != like[0].shape[:2]:
            raise ValueError(
                f"{name} has shape {features.shape}; it must match prompt_embeds {like[0].shape}"
            )
        if not np.isfinite(features).all():
            raise NonFiniteError(f"{name} holds NaN or infinite values; pass finite embeddings")
        return features, mask.astype(np.int64)

    @staticmethod
    def _stack_embeds(cond, uncond, idx, guided):
        sel = slice(idx.start, idx.stop)
        feats, mask = [np.asarray(cond[0][sel], np.float32)], [np.asarray(cond[1][sel], np.int64)]
        if guided:
            feats.append(np.asarray(uncond[0][sel], np.float32))
            mask.append(np.asarray(uncond[1][sel], np.int64))
        return np.concatenate(feats), np.concatenate(mask)

    def denoise(
        self,
        noise: np.ndarray,
        embeds: np.ndarray,
        mask: np.ndarray,
        steps: int,
        guidance: float,
        height: int,
        width: int,
        frames: int = 1,
        timings: Timings | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """The sampling loop. noise [B, C, F, h, w]; embeds/mask hold 2B rows (cond, uncond) when
        guidance != 1, else B. height/width/frames are pixels (they drive rflow's shift)."""
        timings = timings if timings is not None else Timings()
        sampler = make_sampler(self.scheduler, steps, height, width, frames)
        b, c = noise.shape[0], noise.shape[1]
        guided = guidance != 1.0
        g = np.float32(guidance)
        x = np.array(noise, dtype=np.float32)
        x_in = np.empty(((2 if guided else 1) * b, *x.shape[1:]), np.float32)  # reused every step
        t_in = np.empty((x_in.shape[0],), np.float32)
        feeds = {
            "hidden_states": x_in,
            "timestep": t_in,
            "encoder_hidden_states": np.ascontiguousarray(embeds, dtype=np.float32),
            "encoder_attention_mask": np.ascontiguousarray(mask, dtype=np.int64),
        }
        run, name, calls = self.transformer.run, self.output_name, timings.transformer
        loop_start = time.perf_counter()
        for i, t in enumerate(sampler.timesteps):
            x_in[:b] = x
            if guided:
                x_in[b:] = x
            t_in.fill(t)
            t0 = time.perf_counter()
            out = run(feeds, TEXT_INPUTS)[name]
            calls.append(time.perf_counter() - t0)
            pred = out[:, :c]  # the velocity / v half of the output channels
            if guided:
                uncond = pred[b:]
                pred = uncond + g * (pred[:b] - uncond)
            x = sampler.step(i, x, pred)
            if not np.isfinite(x).all():
                raise NonFiniteError(
                    f"the latents became NaN or infinite at step {i + 1} of {steps} (guidance {guidance:g}); "
                    "lower the guidance, use more steps, or check the embeddings and the engine "
                    f"(`ptdit-export verify {self.folder.root} --files`)"
                )
            if progress is not None:
                progress(i + 1, steps)
        timings.loop += time.perf_counter() - loop_start
        return x

    def close(self) -> None:
        for engine in (
            self.transformer,
            getattr(self.text_encoder, "engine", None),
            getattr(self.vae, "engine", None),
        ):
            if engine is not None:
                engine.close()


def _offset_progress(
    progress: Callable[[int, int], None], chunk: int, chunks: int
) -> Callable[[int, int], None]:
    """Report steps of chunk `chunk` as steps of the whole call."""
    return lambda i, total: progress(chunk * total + i, total * chunks)
