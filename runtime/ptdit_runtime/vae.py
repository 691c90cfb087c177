"""Latents -> pictures with the ONNX decoder of DIR/vae_decoder.

Contract of the decoder graph: input `latent` [B, C, F, h, w] float32 in the VAE's own
space, output `images` [B, 3, F', H, W] float32 in [0, 1] (H = h * spatial_compression,
F' = frames for image VAEs). The runtime un-scales the denoiser's latents before the graph:
z_vae = z / scaling_factor + shift_factor. Samples are decoded one at a time to bound memory.
"""

from __future__ import annotations

import numpy as np

from ptdit_runtime.configs import VaeDecoderConfig
from ptdit_runtime.engines.base import Engine


class VaeDecoder:
    def __init__(self, engine: Engine, config: VaeDecoderConfig):
        self.engine, self.config = engine, config
        self.input = "latent" if "latent" in engine.inputs else next(iter(engine.inputs))
        self.output = "images" if "images" in engine.outputs else next(iter(engine.outputs))

    def unscale(self, latents: np.ndarray) -> np.ndarray:
        c = self.config
        return (latents / np.float32(c.scaling_factor) + np.float32(c.shift_factor)).astype(np.float32)

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        """float32 [B, C, F, h, w] (denoiser space) -> float32 [B, 3, F', H, W] in [0, 1]."""
        if latents.ndim != 5 or latents.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"latents of shape {latents.shape} do not fit this VAE: it takes "
                f"[B, {self.config.latent_channels}, F, h, w]"
            )
        z = self.unscale(latents)
        parts = [self.engine.run({self.input: z[i : i + 1]})[self.output] for i in range(z.shape[0])]
        return np.clip(np.concatenate(parts), 0.0, 1.0)
