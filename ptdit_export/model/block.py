"""One PT-DiT block: proxy tokens, window and shifted-window attention, text, MLP."""

from __future__ import annotations

import torch
from torch import nn

from ptdit_export.model import attention, layout
from ptdit_export.model.attention import Attention
from ptdit_export.model.config import PTDiTConfig
from ptdit_export.model.linear import Linear


class FeedForward(nn.Module):
    """hidden -> 4*hidden -> hidden; names ff.net.0.proj / ff.net.2 as in the release."""

    def __init__(self, dim: int, activation: str):
        super().__init__()
        inner = 4 * dim
        act = _Activation(dim, inner, activation)
        self.net = nn.ModuleList([act, nn.Dropout(0.0), Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x.to(self.net[2].weight.dtype)))


class _Activation(nn.Module):
    def __init__(self, dim: int, inner: int, kind: str):
        super().__init__()
        self.kind = kind
        self.proj = Linear(dim, 2 * inner if kind == "geglu" else inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        if self.kind == "gelu":
            return nn.functional.gelu(x)
        if self.kind == "gelu-approximate":
            return nn.functional.gelu(x, approximate="tanh")
        if self.kind == "geglu":
            x, gate = x.chunk(2, dim=-1)
            return x * nn.functional.gelu(gate)
        return x * torch.sigmoid(1.702 * x)  # geglu-approximate


def _norm(cfg: PTDiTConfig) -> nn.LayerNorm:
    return nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps, elementwise_affine=cfg.norm_elementwise_affine)


class PTDiTBlock(nn.Module):
    """Parameter names follow the release's ProxyTokensTransformerBlock."""

    def __init__(self, cfg: PTDiTConfig):
        super().__init__()
        d, heads, hd, bias = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.attention_bias
        self.window, self.groups = cfg.window, cfg.proxy_groups
        self.shift_window = cfg.shift_window

        self.proxy_norm1, self.proxy_attn1 = _norm(cfg), Attention(d, heads, hd, bias, "proxy")
        self.norm_before, self.proxy_cross_norm = _norm(cfg), _norm(cfg)
        self.pvisual_attn2 = Attention(d, heads, hd, bias, "proxy_cross")
        self.linear_1_visual = Linear(d, d)
        self.norm1, self.attn1 = _norm(cfg), Attention(d, heads, hd, bias, "window")
        if self.shift_window:
            self.shift_window_norm = _norm(cfg)
            self.attn3 = Attention(d, heads, hd, bias, "shifted_window")
            self.linear_2 = Linear(d, d)
            self.proxy_scale_shift_table = nn.Parameter(torch.randn(3, d) / d**0.5)
        self.attn2 = Attention(d, heads, hd, bias, "text")
        self.norm2, self.ff = _norm(cfg), FeedForward(d, cfg.activation_fn)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d**0.5)
        for zero_init in (self.linear_1_visual, getattr(self, "linear_2", None)):
            if zero_init is not None:
                nn.init.zeros_(zero_init.weight)
                nn.init.zeros_(zero_init.bias)

    def forward(
        self,
        x: torch.Tensor,
        t6: torch.Tensor,
        text: torch.Tensor,
        text_bias: torch.Tensor | None,
        shift_bias: torch.Tensor | None,
        grid: tuple,
    ) -> torch.Tensor:
        """x [(B nW), N, D] window-major; t6 [B, 6D]; text [B, L, D]; text_bias [B, 1, 1, L];
        shift_bias [(B nW), 1, N, N]; grid (F, h, w) tokens."""
        r, n, d = x.shape
        b = t6.shape[0]
        n_win = r // b

        # 0. Modulation rows. The release tiles t6 over windows with repeat(), so row i of the
        #    (B nW) layout takes sample i mod B; identical per sample whenever the batch shares
        #    one timestep (always true in sampling), reproduced as is for checkpoint parity.
        rows = t6.reshape(b, 6, d).repeat(n_win, 1, 1)  # (R, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + rows
        ).chunk(6, dim=1)  # each (R, 1, D)

        # 1. Proxy tokens: window means, global self-attention among them
        proxies = attention.pool(x, self.window, self.groups)  # (R, S, D)
        proxies = proxies.reshape(b, -1, d)  # (B, nW*S, D)
        proxies = proxies + self.proxy_attn1(self.proxy_norm1(proxies))

        # 2. Every token attends to the proxies of its sample
        tokens = x.reshape(b, n_win * n, d)  # (B, nW*N, D)
        visual = self.pvisual_attn2(self.norm_before(tokens), context=self.proxy_cross_norm(proxies))
        x = x + self.linear_1_visual(visual.reshape(r, n, d))

        # 3. Window self-attention
        h = self.norm1(x) * (1 + scale_msa) + shift_msa
        x = x + gate_msa * self.attn1(h, geometry=(grid, self.window))  # (R, N, D)

        # 4. Shifted-window self-attention with the region mask
        if self.shift_window:
            sw_shift, sw_scale, sw_gate = (self.proxy_scale_shift_table[None] + rows[:, :3]).chunk(3, dim=1)
            geometry = (grid, self.window)
            if attention.active().fuses_shift:
                # the attention rolls q/k/v itself; the modulation rows belong to the rolled
                # frame, so each unrolled token takes the row its rolled position falls in
                ids = torch.arange(r, device=x.device)[:, None, None].expand(r, n, 1)
                src = layout.shift_windows(ids, grid, self.window, inverse=True)[..., 0]  # (R, N)
                h = self.shift_window_norm(x) * (1 + sw_scale[:, 0][src]) + sw_shift[:, 0][src]
                h = self.attn3(h, geometry=geometry)
            else:
                h = layout.shift_windows(x, grid, self.window)
                h = self.shift_window_norm(h) * (1 + sw_scale) + sw_shift
                h = self.attn3(h, bias=shift_bias, geometry=geometry)
                h = layout.shift_windows(h, grid, self.window, inverse=True)
            x = x + self.linear_2(sw_gate * h)

        # 5. Text cross-attention (queries un-normalised, as released)
        tokens = x.reshape(b, n_win * n, d)
        tokens = tokens + self.attn2(tokens, context=text, bias=text_bias)
        x = tokens.reshape(r, n, d)

        # 6. MLP
        h = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h)
