"""Window-sharded generation over an engine folder: the runtime's loop, one slab per rank.

The transformer is the PyTorch model of the folder (`--backend torch`: its weights, or the
source export.json records), split over the ranks by `ShardedPTDiT`; ONNX/TensorRT graphs are
not sharded. Rank 0 runs the text encoder and broadcasts the caption features once per
generation; every rank draws the seeded noise of the whole latent and keeps its rows; the
runtime's `Pipeline.denoise` then runs unchanged on the slab (the samplers are elementwise),
and the final latents are gathered on rank 0 for the VAE.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ptdit_export.parallel.comm import Comm
from ptdit_export.parallel.model import ShardedPTDiT
from ptdit_runtime.engines.base import Engine

log = logging.getLogger(__name__)


class SlabEngine(Engine):
    """The runtime's Engine interface over `ShardedPTDiT.forward_slab`: hidden_states is this
    rank's rows of a latent `height` rows high (set before the loop)."""

    backend = "torch-parallel"

    def __init__(self, sharded: ShardedPTDiT, height: int = 0):
        import torch

        from ptdit_runtime.engines.torch_ref import transformer_specs

        self.torch, self.sharded, self.height = torch, sharded, height
        self.device = sharded.comm.device
        cfg = sharded.config
        self.inputs, self.outputs = transformer_specs(cfg)

    def run(self, feeds: Mapping[str, np.ndarray], constant: Iterable[str] = ()) -> dict[str, np.ndarray]:
        torch = self.torch
        feeds = self.prepare_feeds(feeds)
        names = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask")
        args = [torch.from_numpy(feeds[n]).to(self.device) for n in names]
        with torch.inference_mode():
            out = self.sharded.forward_slab(*args, height=self.height)
        return {"model_output": out.cpu().numpy()}


def load(engine_dir: str | Path, comm: Comm, provider: str | None = None, threads: int | None = None):
    """(Pipeline over a SlabEngine, ShardedPTDiT) on this rank: the folder's torch model (as
    `--backend torch` loads it) on comm.device; text encoder and VAE (ONNX Runtime) on rank 0."""
    from ptdit_runtime import EngineFolder, Pipeline, load_engine
    from ptdit_runtime.engines.ort import resolve_provider
    from ptdit_runtime.engines.torch_ref import TorchEngine
    from ptdit_runtime.text import TextEncoder, Tokenizer
    from ptdit_runtime.vae import VaeDecoder

    folder = EngineFolder(engine_dir)
    model = TorchEngine(folder.transformer_dir, device=str(comm.device)).model
    sharded = ShardedPTDiT(model, comm)
    text = vae = None
    if comm.rank == 0:
        side = {"provider": resolve_provider(provider), "device_id": 0, "threads": threads}
        if folder.text_encoder_dir:
            cfg = folder.text_config
            engine = load_engine(folder.text_encoder_dir, "onnxruntime", **side)
            text = TextEncoder(engine, Tokenizer(folder.tokenizer_dir, cfg.max_length), cfg)
        if folder.vae_dir:
            vae = VaeDecoder(load_engine(folder.vae_dir, "onnxruntime", **side), folder.vae_config)
    return Pipeline(folder, SlabEngine(sharded), text, vae), sharded


def generate(
    pipe,
    comm: Comm,
    prompts: Sequence[str] | str,
    negative_prompt: Sequence[str] | str | None = None,
    steps: int = 30,
    guidance: float = 4.0,
    seed: int | Sequence[int] = 0,
    height: int | None = None,
    width: int | None = None,
    frames: int | None = None,
    output: str = "uint8",
    progress: Callable[[int, int], None] | None = None,
):
    """Call on every rank with the same arguments. Rank 0 returns the PipelineOutput (the same
    pictures a single-process torch Pipeline makes), other ranks return None."""
    import time

    import torch

    from ptdit_runtime import PipelineOutput, Timings, check_request, to_uint8
    from ptdit_runtime.noise import initial_noise

    start = time.perf_counter()
    req = check_request(
        pipe.folder, prompts, negative_prompt, steps, guidance, seed, height, width, frames, output,
        engine=pipe.transformer,
    )  # fmt: skip
    c, f, hh, ww = req.latent_shape
    plan = pipe.transformer.sharded.plan(f, hh, ww)  # a size that does not split stops here
    pipe.transformer.height = hh
    p = pipe.transformer.sharded.config.patch_size
    timings, latents, pictures = Timings(), [], []
    n = len(req.prompts)
    chunks = [range(i, min(i + req.chunk, n)) for i in range(0, n, req.chunk)]
    for k, idx in enumerate(chunks):
        # 1. caption features on rank 0, broadcast once per generation
        t0 = time.perf_counter()
        if comm.rank == 0:
            embeds, mask = pipe.encode(
                [req.prompts[i] for i in idx], [req.negatives[i] for i in idx], req.guided
            )
            shapes = (embeds.shape, mask.shape)
        shapes = comm.broadcast_object(shapes if comm.rank == 0 else None)
        dev = comm.device  # NCCL moves device tensors only
        if comm.rank == 0:
            e = torch.from_numpy(np.ascontiguousarray(embeds, np.float32)).to(dev)
            m = torch.from_numpy(np.ascontiguousarray(mask, np.int64)).to(dev)
        else:
            e = torch.empty(shapes[0], device=dev)
            m = torch.empty(shapes[1], dtype=torch.int64, device=dev)
        e, m = comm.broadcast(e, "text").cpu(), comm.broadcast(m, "text").cpu()
        timings.text_encoder += time.perf_counter() - t0

        # 2. this rank's rows of the seeded noise, the runtime's loop on the slab
        noise = initial_noise([req.seeds[i] for i in idx], req.latent_shape)
        noise = noise[:, :, :, plan.row0 * p : (plan.row0 + plan.rows) * p]
        z = pipe.denoise(
            np.ascontiguousarray(noise), e.numpy(), m.numpy(), req.steps, req.guidance,
            req.height, req.width, req.frames, timings,
            None if progress is None else _offset(progress, k, len(chunks)),
        )  # fmt: skip

        # 3. whole latents on rank 0, VAE there
        parts = comm.all_gather(torch.from_numpy(np.ascontiguousarray(z)).to(dev), "latents")
        if comm.rank == 0:
            z = torch.cat(parts, dim=3).cpu().numpy()
            latents.append(z)
            if req.output != "latent":
                t0 = time.perf_counter()
                images = pipe.vae(z)
                timings.vae += time.perf_counter() - t0
                pictures += list(
                    to_uint8(images) if req.output == "uint8" else images.transpose(0, 2, 3, 4, 1)
                )
    if comm.rank != 0:
        return None
    if pictures and req.frames == 1:
        pictures = [q[0] for q in pictures]
    timings.total = time.perf_counter() - start
    return PipelineOutput(pictures, np.concatenate(latents), timings)


def _offset(progress: Callable[[int, int], None], chunk: int, chunks: int) -> Callable[[int, int], None]:
    """Report the steps of chunk `chunk` as steps of the whole call."""
    return lambda i, total: progress(chunk * total + i, total * chunks)
