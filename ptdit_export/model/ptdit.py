"""PTDiT: the proxy-tokenized diffusion transformer, state-dict compatible with the release."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptdit_export.model import layout
from ptdit_export.model.block import PTDiTBlock
from ptdit_export.model.config import PTDiTConfig
from ptdit_export.model.embeddings import AdaLNSingle, CaptionProjection, PatchEmbed
from ptdit_export.model.linear import Linear
from ptdit_export.model.presets import load_config

log = logging.getLogger(__name__)


class PTDiT(nn.Module):
    """PT-DiT denoiser for images (F = 1) and video.

    forward(hidden_states [B, C, F, H, W], timestep [B], encoder_hidden_states [B, L, caption],
    encoder_attention_mask [B, L] (1 keep, 0 pad) or None) -> [B, out_channels, F, H, W] fp32.
    H and W must be multiples of patch_size * window, F of the temporal window.
    Build with `from_config` (dict, JSON path or preset name) or `from_pretrained`.
    """

    def __init__(self, config: PTDiTConfig):
        super().__init__()
        self.config = cfg = config
        d = cfg.hidden_size
        native = (cfg.frame, cfg.sample_size // cfg.patch_size, cfg.sample_size // cfg.patch_size)
        self.pos_embed = PatchEmbed(cfg.in_channels, d, cfg.patch_size, cfg.interpolation_scale, native)
        self.adaln_single = AdaLNSingle(d, cfg.use_additional_conditions)
        self.caption_projection = CaptionProjection(cfg.caption_channels, d) if cfg.caption_channels else None
        self.transformer_blocks = nn.ModuleList(PTDiTBlock(cfg) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d**0.5)
        self.proj_out = Linear(d, cfg.patch_size**2 * cfg.out_channels)
        # None: everything in the weights' dtype (the release). The exporter sets fp32 here for
        # fp16/bf16 graphs so norms, modulation, gates and the residual stream stay in fp32.
        self.residual_dtype: torch.dtype | None = None
        self.compute_dtype: torch.dtype | None = None  # None: the patch embedding's dtype

    # ------------------------------------------------------------ building
    @classmethod
    def from_config(cls, config: str | Path | dict[str, Any] | PTDiTConfig, **overrides: Any) -> PTDiT:
        cfg = load_config(config)
        return cls(cfg.replace(**overrides) if overrides else cfg)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: torch.dtype | None = None, strict: bool = True
    ) -> PTDiT:
        """Config + weights from a folder, or a weights file with a config.json beside it."""
        from ptdit_export.model.checkpoint import model_from_pretrained

        return model_from_pretrained(cls, path, dtype=dtype, strict=strict)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Accepts the release's parameter names as they are (and our own, which are the same)."""
        from ptdit_export.model.checkpoint import normalise_state_dict

        state_dict = normalise_state_dict(state_dict, self)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def dtype(self) -> torch.dtype:
        return self.compute_dtype or self.pos_embed.proj.weight.dtype

    # ------------------------------------------------------------- forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        cfg, dtype = self.config, self.dtype
        if not torch.compiler.is_compiling() and not torch.jit.is_tracing():
            self._check_inputs(hidden_states, timestep, encoder_hidden_states, encoder_attention_mask)
        b, _, f, hh, ww = hidden_states.shape
        p = cfg.patch_size
        grid = (f, hh // p, ww // p)  # tokens (F, h, w)

        # 1. Input: patches + positions, windows, timestep and caption embeddings
        x = self.pos_embed(hidden_states.to(dtype), self.residual_dtype)  # (B, F, h, w, D)
        x = layout.grid_to_windows(x, cfg.window)  # (B nW, N, D)
        t6, t_emb = self.adaln_single(timestep.to(dtype), dtype, **(added_cond_kwargs or {}))
        text = encoder_hidden_states.to(dtype)
        if self.caption_projection is not None:
            text = self.caption_projection(text)  # (B, L, D)
        text_bias = layout.padding_bias(encoder_attention_mask, text.dtype)  # (B, 1, 1, L) or None
        shift_bias = None
        if cfg.shift_window:
            shift_bias = layout.shift_region_bias(grid, cfg.window, x.dtype, x.device)  # (nW, N, N)
            shift_bias = shift_bias.repeat(b, 1, 1)[:, None]  # (B nW, 1, N, N)

        # 2. Blocks
        for block in self.transformer_blocks:
            x = block(x, t6, text, text_bias, shift_bias, grid)

        # 3. Output: final adaLN, projection, unpatchify
        r, n, d = x.shape
        shift, scale = (self.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)  # (B, 1, D)
        x = self.norm_out(x).reshape(b, r // b * n, d)  # (B, nW*N, D)
        x = self.proj_out(x * (1 + scale) + shift)  # (B, nW*N, p*p*C)
        x = layout.windows_to_grid(x.reshape(r, n, -1), grid, cfg.window)  # (B, F, h, w, p*p*C)
        c = cfg.out_channels
        x = x.reshape(b, f, grid[1], grid[2], p, p, c).permute(0, 6, 1, 2, 4, 3, 5)
        return x.reshape(b, c, f, hh, ww).float()  # (B, C, F, H, W)

    def _check_inputs(self, x, t, text, mask) -> None:
        cfg = self.config
        if x.ndim != 5:
            raise ValueError(
                f"hidden_states must be [B, C, F, H, W] (images: F = 1); got shape {tuple(x.shape)}"
            )
        b, c, f, hh, ww = x.shape
        cfg.check_latent(c, f, hh, ww)
        if t.ndim != 1 or t.shape[0] != b:
            raise ValueError(f"timestep must be [B] = [{b}]; got shape {tuple(t.shape)}")
        width = cfg.caption_channels or cfg.hidden_size
        if text.ndim != 3 or text.shape[0] != b or text.shape[2] != width:
            raise ValueError(
                f"encoder_hidden_states must be [B, L, {width}] with B = {b} "
                f"(caption_channels); got shape {tuple(text.shape)}"
            )
        if mask is not None and (mask.shape[0] != b or mask.shape[-1] != text.shape[1]):
            raise ValueError(
                f"encoder_attention_mask must be [B, L] = [{b}, {text.shape[1]}]; "
                f"got shape {tuple(mask.shape)}"
            )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
