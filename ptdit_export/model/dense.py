"""DenseDiT: a dense-attention baseline in the PixArt-alpha layout, built from PT-DiT's parts.

Same input pipeline as PT-DiT (patch embedding with the same 3-D sin-cos code, adaLN-single,
caption projection) and the same final layer; each block is the PixArt-alpha block:

    x = x + gate_msa * SelfAttn(modulate(norm1(x), shift_msa, scale_msa))   global, all tokens
    x = x + CrossAttn(x, caption)                                            queries un-normalised
    x = x + gate_mlp * MLP(modulate(norm2(x), shift_mlp, scale_mlp))

It exists to measure what PT-DiT saves (`ptdit_export.flops`), so it takes the same forward
arguments and returns the same [B, out_channels, F, H, W] float32 output. Parameter names follow
diffusers' PixArt blocks (attn1, attn2, ff, norm1, norm2, scale_shift_table).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ptdit_export.model import layout
from ptdit_export.model.attention import Attention
from ptdit_export.model.block import FeedForward
from ptdit_export.model.config import ACTIVATIONS, PTDiTConfig
from ptdit_export.model.embeddings import AdaLNSingle, CaptionProjection, PatchEmbed

GLOBAL_KIND = "global"  # self-attention over every token of a sample


@dataclass(frozen=True)
class DenseDiTConfig:
    """Shape of a dense baseline. Field names and defaults mirror PTDiTConfig (no windows)."""

    num_heads: int = 16  # attention heads
    head_dim: int = 72  # channels per head; hidden = num_heads * head_dim
    in_channels: int = 4  # latent channels in
    out_channels: int = 8  # channels out
    num_layers: int = 28  # transformer blocks
    attention_bias: bool = True  # bias on to_q / to_k / to_v
    sample_size: int = 32  # training latent size; sets the position-code interpolation scale
    frame: int = 1  # training frame count (native position-code grid)
    patch_size: int = 2  # spatial patch; time is never patched
    activation_fn: str = "gelu-approximate"  # feed-forward activation
    norm_elementwise_affine: bool = False  # LayerNorm weights in the blocks
    norm_eps: float = 1e-6  # LayerNorm epsilon in the blocks
    caption_channels: int | None = 4096  # text feature width; None: no caption projection

    def __post_init__(self) -> None:
        for name in ("num_heads", "head_dim", "in_channels", "out_channels", "num_layers", "patch_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"DenseDiT config field {name!r} must be a positive integer")
        if self.activation_fn not in ACTIVATIONS:
            raise ValueError(
                f"DenseDiT config field 'activation_fn': {self.activation_fn!r} not in {ACTIVATIONS}"
            )
        if self.hidden_size % 16:
            raise ValueError(f"hidden size {self.hidden_size} must be a multiple of 16 (3-D sin-cos code)")

    @property
    def hidden_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def interpolation_scale(self) -> int:
        return max(self.sample_size // 64, 1)

    @property
    def use_additional_conditions(self) -> bool:
        return self.sample_size == 128

    @classmethod
    def from_ptdit(cls, cfg: PTDiTConfig, **overrides: Any) -> DenseDiTConfig:
        """The dense config with PT-DiT's width, depth, embeddings and output (windows dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in cfg.to_dict().items() if k in names}
        return cls(**{**kwargs, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> DenseDiTConfig:
        return dataclasses.replace(self, **changes)


def dense_config_equal_width(cfg: PTDiTConfig) -> DenseDiTConfig:
    """Dense baseline with PT-DiT's width and depth (fewer parameters: 2 attentions per block, not 5)."""
    return DenseDiTConfig.from_ptdit(cfg)


def dense_config_equal_params(cfg: PTDiTConfig) -> DenseDiTConfig:
    """Dense baseline with PT-DiT's width and the depth whose parameter count is closest to PT-DiT's.

    Width (heads, head_dim) is kept so per-token linear costs stay comparable; only num_layers
    changes (ties go to the shallower model). Parameters are counted on the meta device.
    """
    target = count_parameters(cfg)
    one = count_parameters(DenseDiTConfig.from_ptdit(cfg, num_layers=1))
    two = count_parameters(DenseDiTConfig.from_ptdit(cfg, num_layers=2))
    per_layer, base = two - one, 2 * one - two
    guess = max(1, round((target - base) / per_layer))
    best = min(
        (layers for layers in (guess - 1, guess, guess + 1) if layers >= 1),
        key=lambda layers: (abs(base + layers * per_layer - target), layers),
    )
    return DenseDiTConfig.from_ptdit(cfg, num_layers=best)


@functools.lru_cache(maxsize=64)
def count_parameters(cfg: PTDiTConfig | DenseDiTConfig) -> int:
    """Parameter count of the model a config describes, built on the meta device (no memory)."""
    from ptdit_export.model.ptdit import PTDiT

    with torch.device("meta"):
        model = DenseDiT(cfg) if isinstance(cfg, DenseDiTConfig) else PTDiT(cfg)
    return sum(p.numel() for p in model.parameters())


def _norm(cfg: DenseDiTConfig) -> nn.LayerNorm:
    return nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps, elementwise_affine=cfg.norm_elementwise_affine)


class DenseDiTBlock(nn.Module):
    """PixArt-alpha block: global self-attention, text cross-attention, MLP, adaLN-single."""

    def __init__(self, cfg: DenseDiTConfig):
        super().__init__()
        d, heads, hd, bias = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.attention_bias
        self.norm1, self.attn1 = _norm(cfg), Attention(d, heads, hd, bias, GLOBAL_KIND)
        self.attn2 = Attention(d, heads, hd, bias, "text")
        self.norm2, self.ff = _norm(cfg), FeedForward(d, cfg.activation_fn)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d**0.5)

    def forward(
        self, x: torch.Tensor, t6: torch.Tensor, text: torch.Tensor, text_bias: torch.Tensor | None
    ) -> torch.Tensor:
        """x [B, N, D] all tokens of a sample; t6 [B, 6D]; text [B, L, D]; text_bias [B, 1, 1, L]."""
        b, _, d = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + t6.reshape(b, 6, d)
        ).chunk(6, dim=1)  # each (B, 1, D)
        h = self.norm1(x) * (1 + scale_msa) + shift_msa
        x = x + gate_msa * self.attn1(h)  # (B, N, D)
        x = x + self.attn2(x, context=text, bias=text_bias)
        h = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h)


class DenseDiT(nn.Module):
    """Dense-attention DiT with PT-DiT's inputs, embeddings and output.

    forward(hidden_states [B, C, F, H, W], timestep [B], encoder_hidden_states [B, L, caption],
    encoder_attention_mask [B, L] (1 keep, 0 pad) or None) -> [B, out_channels, F, H, W] fp32.
    H and W must be multiples of patch_size; any F.
    """

    def __init__(self, config: DenseDiTConfig | PTDiTConfig):
        super().__init__()
        if isinstance(config, PTDiTConfig):
            config = dense_config_equal_width(config)
        self.config = cfg = config
        d = cfg.hidden_size
        native = (cfg.frame, cfg.sample_size // cfg.patch_size, cfg.sample_size // cfg.patch_size)
        self.pos_embed = PatchEmbed(cfg.in_channels, d, cfg.patch_size, cfg.interpolation_scale, native)
        self.adaln_single = AdaLNSingle(d, cfg.use_additional_conditions)
        self.caption_projection = CaptionProjection(cfg.caption_channels, d) if cfg.caption_channels else None
        self.transformer_blocks = nn.ModuleList(DenseDiTBlock(cfg) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d**0.5)
        self.proj_out = nn.Linear(d, cfg.patch_size**2 * cfg.out_channels)

    @property
    def dtype(self) -> torch.dtype:
        return self.pos_embed.proj.weight.dtype

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        cfg, dtype = self.config, self.dtype
        self._check_inputs(hidden_states, encoder_hidden_states)
        b, _, f, hh, ww = hidden_states.shape
        p = cfg.patch_size
        h, w = hh // p, ww // p

        # 1. Input: patches + positions (row-major F, h, w tokens), timestep, caption
        x = self.pos_embed(hidden_states.to(dtype))  # (B, F, h, w, D)
        x = x.reshape(b, f * h * w, -1)  # (B, N, D)
        t6, t_emb = self.adaln_single(timestep.to(dtype), dtype, **(added_cond_kwargs or {}))
        text = encoder_hidden_states.to(dtype)
        if self.caption_projection is not None:
            text = self.caption_projection(text)  # (B, L, D)
        text_bias = layout.padding_bias(encoder_attention_mask, text.dtype)  # (B, 1, 1, L) or None

        # 2. Blocks
        for block in self.transformer_blocks:
            x = block(x, t6, text, text_bias)

        # 3. Output: final adaLN, projection, unpatchify
        shift, scale = (self.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)  # (B, 1, D)
        x = self.proj_out(self.norm_out(x) * (1 + scale) + shift)  # (B, N, p*p*C)
        c = cfg.out_channels
        x = x.reshape(b, f, h, w, p, p, c).permute(0, 6, 1, 2, 4, 3, 5)
        return x.reshape(b, c, f, hh, ww).float()  # (B, C, F, H, W)

    def _check_inputs(self, x: torch.Tensor, text: torch.Tensor) -> None:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"hidden_states must be [B, {cfg.in_channels}, F, H, W]; got shape {tuple(x.shape)}"
            )
        if x.shape[3] % cfg.patch_size or x.shape[4] % cfg.patch_size:
            raise ValueError(
                f"latent H and W must be multiples of patch_size {cfg.patch_size}; got {tuple(x.shape)}"
            )
        width = cfg.caption_channels or cfg.hidden_size
        if text.ndim != 3 or text.shape[0] != x.shape[0] or text.shape[2] != width:
            raise ValueError(f"encoder_hidden_states must be [B, L, {width}]; got shape {tuple(text.shape)}")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
