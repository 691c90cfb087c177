"""Embeddings of PT-DiT: timestep (adaLN-single), caption projection, 3-D sin-cos positions."""

from __future__ import annotations

import math

import torch
from torch import nn

from ptdit_export.model.linear import Linear

TIMESTEP_CHANNELS = 256


def timestep_features(t: torch.Tensor, channels: int = TIMESTEP_CHANNELS) -> torch.Tensor:
    """Sinusoidal features [B] -> [B, channels] in fp32: [cos(t*f_k), sin(t*f_k)],
    f_k = 10000^(-k/half), k = 0..half-1 (cos first, no frequency shift)."""
    half = channels // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepMLP(nn.Module):
    """linear_1 -> SiLU -> linear_2 (names as in the release)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = Linear(in_dim, dim)
        self.linear_2 = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(nn.functional.silu(self.linear_1(x)))


class ConditionEmbedding(nn.Module):
    """Timestep embedding, plus PixArt resolution / aspect-ratio embeddings when enabled."""

    def __init__(self, dim: int, additional_conditions: bool):
        super().__init__()
        self.timestep_embedder = TimestepMLP(TIMESTEP_CHANNELS, dim)
        self.additional_conditions = additional_conditions
        if additional_conditions:
            self.resolution_embedder = TimestepMLP(TIMESTEP_CHANNELS, dim // 3)
            self.aspect_ratio_embedder = TimestepMLP(TIMESTEP_CHANNELS, dim // 3)

    def forward(self, timestep, dtype, resolution=None, aspect_ratio=None) -> torch.Tensor:
        emb = self.timestep_embedder(timestep_features(timestep).to(dtype))  # (B, D)
        if not self.additional_conditions:
            return emb
        if resolution is None or aspect_ratio is None:
            raise ValueError(
                "this model (sample_size 128) conditions on resolution [B, 2] and aspect_ratio "
                "[B, 1]: pass both in added_cond_kwargs"
            )
        b = emb.shape[0]
        res = self.resolution_embedder(timestep_features(resolution.flatten()).to(dtype))
        ar = self.aspect_ratio_embedder(timestep_features(aspect_ratio.flatten()).to(dtype))
        return emb + torch.cat([res.reshape(b, -1), ar.reshape(b, -1)], dim=1)


class AdaLNSingle(nn.Module):
    """adaLN-single: one timestep embedding -> six modulation vectors shared by all blocks."""

    def __init__(self, dim: int, additional_conditions: bool = False):
        super().__init__()
        self.emb = ConditionEmbedding(dim, additional_conditions)
        self.linear = Linear(dim, 6 * dim)

    def forward(self, timestep, dtype, **cond) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.emb(timestep, dtype, **cond)  # (B, D)
        return self.linear(nn.functional.silu(embedded)), embedded  # (B, 6D), (B, D)


class CaptionProjection(nn.Module):
    """caption_channels -> hidden: linear_1, tanh-GELU, linear_2."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = Linear(in_dim, dim)
        self.linear_2 = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(nn.functional.gelu(self.linear_1(x), approximate="tanh"))


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[M] positions -> [M, dim] = [sin(p*w_k), cos(p*w_k)], w_k = 10000^(-k/(dim/2)), fp64."""
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / 10000.0**omega
    out = pos.to(torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def position_embedding_3d(
    dim: int, frames: int, height: int, width: int, scale: float = 1.0, device=None
) -> torch.Tensor:
    """Fixed 3-D sin-cos code [F, h*w, dim] (fp64), tokens row-major in each frame.

    The first quarter of the channels codes the frame index, the rest the 2-D position.
    As in the release, token k of an h x w grid is coded with the pair (k mod h, k div h):
    (column, row) on square grids, and not the true position on non-square ones.
    """
    spatial, temporal = 3 * dim // 4, dim // 4
    # k = i*h + j (i < w, j < h) is coded (j, i): lay the positions out as a [w, h] grid
    scale_t = torch.tensor(scale, dtype=torch.float32)
    a = (torch.arange(height, device=device)[None, :].expand(width, height).float() / scale_t).reshape(-1)
    b = (torch.arange(width, device=device)[:, None].expand(width, height).float() / scale_t).reshape(-1)
    code_2d = torch.cat([sincos_1d(spatial // 2, a), sincos_1d(spatial // 2, b)], dim=1)
    code_t = sincos_1d(temporal, torch.arange(frames, device=device).to(torch.float32))
    return torch.cat(
        [
            code_t[:, None, :].expand(frames, height * width, temporal),
            code_2d[None].expand(frames, height * width, spatial),
        ],
        dim=-1,
    )


class PatchEmbed(nn.Module):
    """Conv2d patch embedding applied frame by frame, plus the 3-D position code (fp32 add)."""

    def __init__(
        self, in_channels: int, dim: int, patch_size: int, interpolation_scale: float, native_grid: tuple
    ):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.patch_size = patch_size
        self.interpolation_scale = interpolation_scale
        # The release keeps the code of its training grid (frame, sample_size/p, sample_size/p)
        # as a buffer that is cast with the model, so there (and only there) a bf16/fp16 model
        # adds a rounded code; every other grid gets a fresh fp32 code.
        self.native_grid = tuple(native_grid)

    def forward(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """[B, C, F, H, W] -> [B, F, h, w, D] in `out_dtype` (default: the weights' dtype)."""
        b, c, f, hh, ww = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, hh, ww)
        x = self.proj(x.to(self.proj.weight.dtype))  # (B F, D, h, w)
        d, h, w = x.shape[1:]
        dtype = self.proj.weight.dtype
        pos = position_embedding_3d(d, f, h, w, self.interpolation_scale, x.device).float()
        if (f, h, w) == self.native_grid and not torch.compiler.is_compiling():
            pos = pos.to(dtype).float()  # (F, hw, D)
        x = x.flatten(2).transpose(1, 2).reshape(b, f, h * w, d)
        x = (x.float() + pos).to(out_dtype or dtype)
        return x.reshape(b, f, h, w, d)
