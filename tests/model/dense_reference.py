"""A straightforward re-implementation of the PT-DiT forward for tests.

Written from the release's description, not from the model code: tokens stay in a row-major
(F, h, w) grid, every attention is one dense softmax over the whole sample with an explicit mask
(block-diagonal for windows, rolled grid plus region labels for shifted windows), proxies are
explicit loops over window members. Slow and obvious on purpose.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEG = -10000.0


def region_labels_1d(length: int, win: int) -> list[int]:
    """Labels by assigning the slices [0:-w], [-w:-s], [-s:] in order (later wins)."""
    s = win // 2
    labels = [0] * length
    for idx, sl in enumerate((slice(0, -win), slice(-win, -s), slice(-s, None))):
        for i in range(length)[sl]:
            labels[i] = idx
    return labels


def sincos(dim: int, pos: torch.Tensor) -> torch.Tensor:
    k = torch.arange(dim // 2, dtype=torch.float64)
    w = 1.0 / 10000 ** (k / (dim / 2))
    a = pos.double()[:, None] * w
    return torch.cat([a.sin(), a.cos()], 1)


def position_code(dim: int, f: int, h: int, w: int, scale: float) -> torch.Tensor:
    """[F*h*w, dim]: frame code in the first quarter; token k of a frame coded (k mod h, k div h)."""
    ds, dt = 3 * dim // 4, dim // 4
    rows = []
    for fi in range(f):
        for k in range(h * w):
            a = torch.tensor([float(k % h) / scale])
            b = torch.tensor([float(k // h) / scale])
            rows.append(
                torch.cat([sincos(dt, torch.tensor([float(fi)])), sincos(ds // 2, a), sincos(ds // 2, b)], 1)
            )
    return torch.cat(rows).float()


def attention(q, k, v, heads, bias=None):
    """Dense multi-head attention, fp64. q [Nq, D], k/v [Nk, D], bias [Nq, Nk]."""
    nq, d = q.shape
    dh = d // heads
    q, k, v = (t.double().reshape(t.shape[0], heads, dh).transpose(0, 1) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / math.sqrt(dh)
    if bias is not None:
        s = s + bias.double()
    return (s.softmax(-1) @ v).transpose(0, 1).reshape(nq, d)


def lin(sd, name, x):
    w = sd[name + ".weight"].double()
    b = sd.get(name + ".bias")
    return F.linear(x.double(), w, None if b is None else b.double())


def attn_module(sd, name, x, ctx, heads, bias=None):
    o = attention(
        lin(sd, name + ".to_q", x), lin(sd, name + ".to_k", ctx), lin(sd, name + ".to_v", ctx), heads, bias
    )
    return lin(sd, name + ".to_out.0", o)


def layer_norm(sd, name, x, eps):
    w = sd.get(name + ".weight")
    b = sd.get(name + ".bias")
    return F.layer_norm(
        x.double(), x.shape[-1:], None if w is None else w.double(), None if b is None else b.double(), eps
    )


def ffn(sd, name, x, act):
    h = lin(sd, name + ".net.0.proj", x)
    if act == "gelu-approximate":
        h = F.gelu(h, approximate="tanh")
    elif act == "gelu":
        h = F.gelu(h)
    elif act == "geglu":
        a, g = h.chunk(2, -1)
        h = a * F.gelu(g)
    else:
        h = h * torch.sigmoid(1.702 * h)
    return lin(sd, name + ".net.2", h)


def forward(model, x, t, text, mask):
    """The PT-DiT forward of `model` (fp64 maths) for inputs x [B,C,F,H,W]."""
    cfg = model.config
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    b, c, f, hh, ww = x.shape
    p = cfg.patch_size
    h, w = hh // p, ww // p
    wf, wh, wwin = cfg.window
    _, ph, pw = cfg.proxy_compress_ratios
    gh, gw = wh // ph, wwin // pw  # proxies per window along rows / cols
    d, heads, eps = cfg.hidden_size, cfg.num_heads, cfg.norm_eps
    nf, nh, nw = f // wf, h // wh, w // wwin
    n_win = nf * nh * nw
    T = f * h * w

    # tokens of a sample in row-major (f, r, c) order; window id and in-window coordinates
    coords = [(fi, r, cc) for fi in range(f) for r in range(h) for cc in range(w)]

    def win_id(fi, r, cc):
        return ((fi // wf) * nh + r // wh) * nw + cc // wwin

    # 1. patch embedding (frame by frame) + position code
    patches = F.conv2d(
        x.double().permute(0, 2, 1, 3, 4).reshape(b * f, c, hh, ww),
        sd["pos_embed.proj.weight"].double(),
        sd["pos_embed.proj.bias"].double(),
        stride=p,
    )  # (B F, D, h, w)
    tok = patches.reshape(b, f, d, h * w).permute(0, 1, 3, 2).reshape(b, T, d)
    tok = tok + position_code(d, f, h, w, cfg.interpolation_scale).double()

    # 2. timestep: 256 sinusoid features, cos first
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    arg = t.double()[:, None] * freqs
    feats = torch.cat([arg.cos(), arg.sin()], 1)
    emb = lin(
        sd,
        "adaln_single.emb.timestep_embedder.linear_2",
        F.silu(lin(sd, "adaln_single.emb.timestep_embedder.linear_1", feats)),
    )
    t6 = lin(sd, "adaln_single.linear", F.silu(emb)).reshape(b, 6, d)

    ctx = text.double()
    if cfg.caption_channels:
        ctx = lin(
            sd,
            "caption_projection.linear_2",
            F.gelu(lin(sd, "caption_projection.linear_1", ctx), approximate="tanh"),
        )
    text_bias = None if mask is None else (1 - mask.double())[:, None, :] * NEG  # (B, 1, L)

    # masks over one sample's tokens
    wid = torch.tensor([win_id(*co) for co in coords])
    window_bias = torch.where(wid[:, None] == wid[None, :], 0.0, -math.inf)
    sf, sh, sw = wf // 2, wh // 2, wwin // 2
    rolled = [((fi + sf) % f, (r + sh) % h, (cc + sw) % w) for fi, r, cc in coords]  # source of rolled pos
    src_index = torch.tensor([(a * h + bb) * w + cc for a, bb, cc in rolled])
    lf, lh, lw = region_labels_1d(f, wf), region_labels_1d(h, wh), region_labels_1d(w, wwin)
    region = torch.tensor([lf[fi] * 9 + lh[r] * 3 + lw[cc] for fi, r, cc in coords])
    shifted_bias = torch.where(wid[:, None] == wid[None, :], 0.0, -math.inf) + torch.where(
        region[:, None] == region[None, :], 0.0, NEG
    )

    out = torch.empty(b, T, d, dtype=torch.float64)
    for bi in range(b):
        xs = tok[bi]
        # the release tiles t6 over windows: window p of sample bi reads sample (bi*nW + p) mod B
        row_t = torch.stack([t6[(bi * n_win + int(wid[k])) % b] for k in range(T)])  # (T, 6, D)
        for li in range(cfg.num_layers):
            pre = f"transformer_blocks.{li}."
            mod = sd[pre + "scale_shift_table"].double()[None] + row_t  # (T, 6, D)
            # proxies: strided groups inside each window, averaged over all frames of the window
            proxies = []
            for wi in range(n_win):
                for y in range(gh):
                    for z in range(gw):
                        members = [
                            k
                            for k, (fi, r, cc) in enumerate(coords)
                            if wid[k] == wi and (r % wh) % gh == y and (cc % wwin) % gw == z
                        ]
                        proxies.append(xs[members].mean(0))
            pr = torch.stack(proxies)
            pr = pr + attn_module(
                sd,
                pre + "proxy_attn1",
                layer_norm(sd, pre + "proxy_norm1", pr, eps),
                layer_norm(sd, pre + "proxy_norm1", pr, eps),
                heads,
            )
            vis = attn_module(
                sd,
                pre + "pvisual_attn2",
                layer_norm(sd, pre + "norm_before", xs, eps),
                layer_norm(sd, pre + "proxy_cross_norm", pr, eps),
                heads,
            )
            xs = xs + lin(sd, pre + "linear_1_visual", vis)
            hn = layer_norm(sd, pre + "norm1", xs, eps) * (1 + mod[:, 1]) + mod[:, 0]
            xs = xs + mod[:, 2] * attn_module(sd, pre + "attn1", hn, hn, heads, window_bias)
            if cfg.shift_window:
                xr = xs[src_index]  # rolled grid, row-major
                row_r = torch.stack([t6[(bi * n_win + int(wid[k])) % b] for k in range(T)])[:, :3]
                mr = sd[pre + "proxy_scale_shift_table"].double()[None] + row_r
                hn = layer_norm(sd, pre + "shift_window_norm", xr, eps) * (1 + mr[:, 1]) + mr[:, 0]
                o = attn_module(sd, pre + "attn3", hn, hn, heads, shifted_bias)
                back = torch.empty_like(o)
                back[src_index] = o  # roll back
                gate = (sd[pre + "proxy_scale_shift_table"].double()[None] + row_t[:, :3])[:, 2]
                xs = xs + lin(sd, pre + "linear_2", gate * back)
            tb = None if text_bias is None else text_bias[bi].expand(T, -1)
            xs = xs + attn_module(sd, pre + "attn2", xs, ctx[bi], heads, tb)
            hn = layer_norm(sd, pre + "norm2", xs, eps) * (1 + mod[:, 4]) + mod[:, 3]
            xs = xs + mod[:, 5] * ffn(sd, pre + "ff", hn, cfg.activation_fn)
        out[bi] = xs

    # 3. final layer and unpatchify
    shift, scale = (sd["scale_shift_table"].double()[None] + emb[:, None]).unbind(1)
    y = F.layer_norm(out, (d,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    y = lin(sd, "proj_out", y)  # (B, T, p*p*C)
    co = cfg.out_channels
    y = y.reshape(b, f, h, w, p, p, co).permute(0, 6, 1, 2, 4, 3, 5).reshape(b, co, f, hh, ww)
    return y
