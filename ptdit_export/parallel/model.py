"""The window-sharded PT-DiT forward: one rank's slab through the unchanged PTDiT weights.

`ShardedPTDiT(model, comm)` runs the blocks of `model` on this rank's rows of the latent grid
(see `sharding`). Per block it all-gathers the pooled proxies (the proxy self-attention then
runs on every rank), exchanges the half-window halo of the shifted-window attention with its
neighbours, and does everything else locally. Every release behaviour of the single-process
model is kept: the position code of the whole grid, modulation rows tiled with repeat(), the
-10000 masks and the strided proxy groups.
"""

from __future__ import annotations

import torch
from torch import nn

from ptdit_export.model import attention, layout
from ptdit_export.model.block import PTDiTBlock
from ptdit_export.model.ptdit import PTDiT
from ptdit_export.parallel.comm import Comm
from ptdit_export.parallel.sharding import SlabPlan


class ShardedPTDiT(nn.Module):
    """forward(full latents) -> full output, gathered on every rank (the app-facing API);
    forward_slab(this rank's rows) -> this rank's rows of the output (what the loop runs)."""

    def __init__(self, model: PTDiT, comm: Comm):
        super().__init__()
        self.model, self.comm = model, comm

    @property
    def config(self):
        return self.model.config

    def plan(self, frames: int, height: int, width: int) -> SlabPlan:
        """The slab plan for a latent of frames x height x width (pixels of the latent)."""
        p = self.config.patch_size
        return SlabPlan(
            (frames, height // p, width // p), self.config.window, self.comm.rank, self.comm.world
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Full [B, C, F, H, W] in, full output out (each rank computes its slab, then all-gather)."""
        b, c, f, hh, ww = hidden_states.shape
        self.model._check_inputs(hidden_states, timestep, encoder_hidden_states, encoder_attention_mask)
        plan = self.plan(f, hh, ww)
        p = self.config.patch_size
        local = plan.slice_rows(hidden_states, 3, p)
        out = self.forward_slab(
            local, timestep, encoder_hidden_states, encoder_attention_mask, hh, added_cond_kwargs
        )
        return torch.cat(self.comm.all_gather(out, "output"), dim=3)

    def forward_slab(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
        height: int,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """hidden_states [B, C, F, H/P, W] (this rank's rows of a latent `height` rows high)
        -> [B, out_channels, F, H/P, W] fp32. Arguments otherwise as PTDiT.forward."""
        m, cfg = self.model, self.config
        if attention.active().fuses_shift:
            raise ValueError(
                f"attention backend {attention._active[-1]!r} rolls the shifted windows itself; "
                "the sharded model needs one that does not (e.g. 'sdpa')"
            )
        dtype = m.dtype
        b, _, f, hs, ww = hidden_states.shape
        plan = self.plan(f, height, ww)
        p = cfg.patch_size
        if hs != plan.rows * p:
            raise ValueError(f"rank {plan.rank} expects {plan.rows * p} latent rows, got {hs}")
        dev = hidden_states.device

        # 1. Input: patches + this slab's rows of the whole grid's position code, windows
        x = _embed_slab(m, hidden_states.to(dtype), plan)  # (B, F, hs, w, D)
        x = layout.grid_to_windows(x, cfg.window)  # (B nW_l, N, D)
        t6, t_emb = m.adaln_single(timestep.to(dtype), dtype, **(added_cond_kwargs or {}))
        text = encoder_hidden_states.to(dtype)
        if m.caption_projection is not None:
            text = m.caption_projection(text)  # (B, L, D)
        text_bias = layout.padding_bias(encoder_attention_mask, text.dtype)  # (B, 1, 1, L)
        shift_bias = None
        if cfg.shift_window:
            shift_bias = plan.shift_bias(x.dtype, dev).repeat(b, 1, 1)[:, None]  # (B nW_l, 1, N, N)
        mod_rows = plan.modulation_rows(b, dev)  # (B nW_l,)

        # 2. Blocks
        for block in m.transformer_blocks:
            x = _block_slab(block, x, t6, text, text_bias, shift_bias, mod_rows, plan, self.comm)

        # 3. Output: final adaLN, projection, unpatchify (all per token)
        r, n, d = x.shape
        shift, scale = (m.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)  # (B, 1, D)
        x = m.norm_out(x).reshape(b, r // b * n, d)
        x = m.proj_out(x * (1 + scale) + shift)  # (B, nW_l*N, p*p*C)
        x = layout.windows_to_grid(x.reshape(r, n, -1), plan.local_grid, cfg.window)
        c, h_l, w_t = cfg.out_channels, plan.rows, plan.grid[2]
        x = x.reshape(b, f, h_l, w_t, p, p, c).permute(0, 6, 1, 2, 4, 3, 5)
        return x.reshape(b, c, f, h_l * p, w_t * p).float()  # (B, C, F, H/P, W)


def _embed_slab(m: PTDiT, x: torch.Tensor, plan: SlabPlan) -> torch.Tensor:
    """PatchEmbed.forward on a slab, with the whole grid's position code for its rows."""
    pe = m.pos_embed
    b, c, f, hh, ww = x.shape
    x = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, hh, ww)
    x = pe.proj(x.to(pe.proj.weight.dtype))  # (B F, D, hs, w)
    d, h, w = x.shape[1:]
    dtype = pe.proj.weight.dtype
    pos = plan.position_code(d, pe.interpolation_scale, x.device).float()  # (F, hs*w, D)
    if plan.grid == pe.native_grid:
        pos = pos.to(dtype).float()  # the release's saved buffer, rounded to the weights' dtype
    x = x.flatten(2).transpose(1, 2).reshape(b, f, h * w, d)
    x = (x.float() + pos).to(m.residual_dtype or dtype)
    return x.reshape(b, f, h, w, d)


def _gather_proxies(proxies: torch.Tensor, plan: SlabPlan, comm: Comm) -> torch.Tensor:
    """[(B nW_l), S, D] local proxies -> [B, nW*S, D] of the whole grid, in global window order."""
    r, s, d = proxies.shape
    f, h, w = plan.grid
    wf, wh, ww = plan.window
    nf, nh_l, nw = f // wf, plan.rows // wh, w // ww
    b = r // (nf * nh_l * nw)
    parts = comm.all_gather(proxies, "proxies")
    g = torch.stack(parts).reshape(plan.world, b, nf, nh_l, nw, s, d)
    return g.permute(1, 2, 0, 3, 4, 5, 6).reshape(b, -1, d)  # (B, nf*P*nh_l*nw*S, D)


def _block_slab(
    blk: PTDiTBlock,
    x: torch.Tensor,
    t6: torch.Tensor,
    text: torch.Tensor,
    text_bias: torch.Tensor | None,
    shift_bias: torch.Tensor | None,
    mod_rows: torch.Tensor,
    plan: SlabPlan,
    comm: Comm,
) -> torch.Tensor:
    """PTDiTBlock.forward on this rank's windows x [(B nW_l), N, D] (non-fused shift path)."""
    r, n, d = x.shape
    b = t6.shape[0]

    # 0. Modulation rows as the single-process model tiles them (global row i -> sample i mod B)
    rows = t6.reshape(b, 6, d)[mod_rows]  # (R_l, 6, D)
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
        blk.scale_shift_table[None] + rows
    ).chunk(6, dim=1)

    # 1. Proxy tokens: local window means, all-gathered, global self-attention on every rank
    proxies = _gather_proxies(attention.pool(x, blk.window, blk.groups), plan, comm)  # (B, M, D)
    proxies = proxies + blk.proxy_attn1(blk.proxy_norm1(proxies))

    # 2. Every local token attends to all proxies of its sample
    tokens = x.reshape(b, r // b * n, d)
    visual = blk.pvisual_attn2(blk.norm_before(tokens), context=blk.proxy_cross_norm(proxies))
    x = x + blk.linear_1_visual(visual.reshape(r, n, d))

    # 3. Window self-attention (local)
    geometry = (plan.local_grid, blk.window)
    h = blk.norm1(x) * (1 + scale_msa) + shift_msa
    x = x + gate_msa * blk.attn1(h, geometry=geometry)

    # 4. Shifted windows: halo in, attention with the region mask, halo back
    if blk.shift_window:
        sw_shift, sw_scale, sw_gate = (blk.proxy_scale_shift_table[None] + rows[:, :3]).chunk(3, dim=1)
        h = plan.to_shifted(x, comm)  # (R_l, N, D) this rank's shifted windows
        h = blk.shift_window_norm(h) * (1 + sw_scale) + sw_shift
        h = blk.attn3(h, bias=shift_bias, geometry=geometry)
        h = plan.from_shifted(h, comm)
        x = x + blk.linear_2(sw_gate * h)

    # 5. Text cross-attention (queries un-normalised, as released)
    tokens = x.reshape(b, r // b * n, d)
    tokens = tokens + blk.attn2(tokens, context=text, bias=text_bias)
    x = tokens.reshape(r, n, d)

    # 6. MLP
    h = blk.norm2(x) * (1 + scale_mlp) + shift_mlp
    return x + gate_mlp * blk.ff(h)
