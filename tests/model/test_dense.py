"""DenseDiT, the dense-attention baseline: attention, forward, configs.

References: an explicit per-head softmax over all tokens written here, a full forward written
here from the PixArt-alpha block description (helpers for linears and norms from
dense_reference.py), and diffusers' PixArtTransformer2DModel as an oracle on the native grid.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ptdit_export.model import PTDiTConfig
from ptdit_export.model.attention import use_backend
from ptdit_export.model.dense import (
    DenseDiT,
    DenseDiTConfig,
    count_parameters,
    dense_config_equal_params,
    dense_config_equal_width,
)
from ptdit_export.model.presets import PRESETS
from tests.conftest import assert_close, randomise
from tests.model.dense_reference import ffn, layer_norm, lin, position_code

# fp32 model vs fp64 reference maths (as the PT-DiT forward parity tests).
FP32_REL = 1e-4
# one fp32 attention module vs fp64 explicit softmax
FP32_ATTN_REL = 1e-5

SMALL = DenseDiTConfig(
    num_heads=2, head_dim=16, num_layers=2, caption_channels=24, sample_size=16, out_channels=8
)


def explicit_attention(x, ctx, heads, wq, bq, wk, bk, wv, bv, wo, bo, bias=None):
    """Multi-head attention, one softmax over all keys, written out per head in fp64.
    x [Nq, D], ctx [Nk, D], bias [Nk] added to every query's scores."""

    def proj(t, weight, b):
        return t.double() @ weight.double().T + (0 if b is None else b.double())

    q, k, v = proj(x, wq, bq), proj(ctx, wk, bk), proj(ctx, wv, bv)
    dh = q.shape[1] // heads
    outs = []
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(dh)  # (Nq, Nk)
        if bias is not None:
            scores = scores + bias.double()[None]
        weights = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
        weights = weights / weights.sum(dim=1, keepdim=True)
        outs.append(weights @ v[:, sl])
    return proj(torch.cat(outs, dim=1), wo, bo)


def attn_params(attn):
    return tuple(None if t is None else t.detach() for t in (
        attn.to_q.weight, attn.to_q.bias, attn.to_k.weight, attn.to_k.bias,
        attn.to_v.weight, attn.to_v.bias, attn.to_out[0].weight, attn.to_out[0].bias,
    ))  # fmt: skip


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_global_attention_is_one_softmax_over_all_tokens(backend):
    model = randomise(DenseDiT(SMALL), seed=1).eval()
    attn = model.transformer_blocks[0].attn1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 32, generator=g)  # 24 tokens = a 4x6 grid
    with torch.no_grad(), use_backend(backend):
        got = attn(x)
    for b in range(2):
        want = explicit_attention(x[b], x[b], 2, *attn_params(attn))
        assert_close(got[b], want, FP32_ATTN_REL, f"global attention, sample {b}, {backend}")


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_text_attention_masks_padded_tokens(backend):
    model = randomise(DenseDiT(SMALL), seed=2).eval()
    attn = model.transformer_blocks[1].attn2
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 24, 32, generator=g), torch.randn(1, 6, 32, generator=g)
    keep = torch.tensor([1.0, 1, 1, 1, 0, 0])
    with torch.no_grad(), use_backend(backend):
        got = attn(x, context=ctx, bias=((1 - keep) * -10000.0)[None, None, None])
    want = explicit_attention(x[0], ctx[0, :4], 2, *attn_params(attn))  # padded keys dropped
    assert_close(got[0], want, FP32_ATTN_REL, f"text attention, {backend}")


def reference_forward(model, x, t, text, mask):
    """DenseDiT forward written out: row-major tokens, explicit attention, per-sample adaLN (fp64)."""
    cfg = model.config
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    b, c, f, hh, ww = x.shape
    p, d, heads, eps = cfg.patch_size, cfg.hidden_size, cfg.num_heads, cfg.norm_eps
    h, w = hh // p, ww // p
    patches = F.conv2d(
        x.double().permute(0, 2, 1, 3, 4).reshape(b * f, c, hh, ww),
        sd["pos_embed.proj.weight"].double(),
        sd["pos_embed.proj.bias"].double(),
        stride=p,
    )  # (B F, D, h, w)
    tok = patches.reshape(b, f, d, h * w).permute(0, 1, 3, 2).reshape(b, f * h * w, d)
    tok = tok + position_code(d, f, h, w, cfg.interpolation_scale).double()
    freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float64) / 128)
    arg = t.double()[:, None] * freqs
    feats = torch.cat([arg.cos(), arg.sin()], 1)
    emb = lin(sd, "adaln_single.emb.timestep_embedder.linear_1", feats)
    emb = lin(sd, "adaln_single.emb.timestep_embedder.linear_2", F.silu(emb))
    t6 = lin(sd, "adaln_single.linear", F.silu(emb)).reshape(b, 6, d)
    ctx = lin(sd, "caption_projection.linear_1", text.double())
    ctx = lin(sd, "caption_projection.linear_2", F.gelu(ctx, approximate="tanh"))
    out = []
    for bi in range(b):
        xs, keep = tok[bi], mask[bi].bool()
        for li in range(cfg.num_layers):
            pre = f"transformer_blocks.{li}."
            mod = sd[pre + "scale_shift_table"].double() + t6[bi]  # (6, D)
            hn = layer_norm(sd, pre + "norm1", xs, eps) * (1 + mod[1]) + mod[0]
            a1 = model.transformer_blocks[li].attn1
            xs = xs + mod[2] * explicit_attention(hn, hn, heads, *attn_params(a1))
            a2 = model.transformer_blocks[li].attn2
            xs = xs + explicit_attention(xs, ctx[bi][keep], heads, *attn_params(a2))
            hn = layer_norm(sd, pre + "norm2", xs, eps) * (1 + mod[4]) + mod[3]
            xs = xs + mod[5] * ffn(sd, pre + "ff", hn, cfg.activation_fn)
        out.append(xs)
    y = torch.stack(out)  # (B, N, D)
    shift, scale = (sd["scale_shift_table"].double()[None] + emb[:, None]).unbind(1)
    y = F.layer_norm(y, (d,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    y = lin(sd, "proj_out", y)
    co = cfg.out_channels
    return y.reshape(b, f, h, w, p, p, co).permute(0, 6, 1, 2, 4, 3, 5).reshape(b, co, f, hh, ww)


CASES = {
    "non-square image, batch 2": (SMALL, (2, 1, 8, 12)),
    "video, non-square": (SMALL, (2, 3, 6, 4)),
    "geglu, affine norms, no q/k/v bias": (
        SMALL.replace(activation_fn="geglu", norm_elementwise_affine=True, attention_bias=False),
        (2, 1, 12, 8),
    ),
}


def inputs(b, f, h, w, seed=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, f, h, w, generator=g)
    t = torch.rand(b, generator=g) * 1000  # distinct timesteps per sample
    text = torch.randn(b, 6, 24, generator=g)
    mask = torch.ones(b, 6)
    mask[-1, 2:] = 0  # padded caption on the last sample
    return x, t, text, mask


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_written_out_reference(name):
    cfg, (b, f, h, w) = CASES[name]
    model = randomise(DenseDiT(cfg)).eval()
    x, t, text, mask = inputs(b, f, h, w)
    with torch.no_grad():
        got = model(x, t, text, mask)
    assert got.dtype == torch.float32 and got.shape == (b, 8, f, h, w)
    assert_close(got, reference_forward(model, x, t, text, mask), FP32_REL, name)


def test_padded_caption_tokens_do_not_matter():
    model = randomise(DenseDiT(SMALL)).eval()
    x, t, text, mask = inputs(2, 1, 8, 12)
    other = text.clone()
    other[-1, 2:] = torch.randn(4, 24) * 10  # change only the padded tokens
    with torch.no_grad():
        assert torch.equal(model(x, t, text, mask), model(x, t, other, mask))
        assert not torch.equal(model(x, t, text, None), model(x, t, other, None))


def test_matches_diffusers_pixart_on_the_native_grid():
    """diffusers' PixArt-alpha transformer as oracle: same parameter names, same maths; its
    position code is 2-D, so its native-grid buffer is swapped for ours."""
    diffusers = pytest.importorskip("diffusers")
    cfg = SMALL
    model = randomise(DenseDiT(cfg), seed=5).eval()
    oracle = diffusers.PixArtTransformer2DModel(
        num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim, in_channels=4, out_channels=8,
        num_layers=cfg.num_layers, cross_attention_dim=cfg.hidden_size, sample_size=cfg.sample_size,
        caption_channels=cfg.caption_channels, norm_elementwise_affine=False, attention_bias=True,
    ).eval()  # fmt: skip
    missing, unexpected = oracle.load_state_dict(model.state_dict(), strict=False)
    assert set(missing) <= {"pos_embed.pos_embed"} and not unexpected, (missing, unexpected)
    with torch.no_grad():
        oracle.pos_embed.pos_embed.copy_(
            position_code(cfg.hidden_size, 1, 8, 8, cfg.interpolation_scale)[None]
        )
    x, t, text, mask = inputs(2, 1, 16, 16)
    with torch.no_grad():
        got = model(x, t, text, mask)[:, :, 0]
        want = oracle(x[:, :, 0], text, timestep=t, encoder_attention_mask=mask, return_dict=False)[0]
    assert_close(got, want, FP32_REL, "DenseDiT vs diffusers PixArt")


def test_equal_width_keeps_width_depth_and_io():
    cfg = PRESETS["qihoo-t2x-1.1b"].config
    dense = dense_config_equal_width(cfg)
    assert (dense.hidden_size, dense.num_layers, dense.caption_channels) == (1152, 28, 4096)
    assert (dense.in_channels, dense.out_channels, dense.patch_size) == (4, 8, 2)


def test_released_width_dense_baseline_has_pixart_alpha_parameter_count():
    """Equal-width dense of the release = PixArt-alpha's shape; diffusers counts its parameters."""
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        oracle = diffusers.PixArtTransformer2DModel(sample_size=32, caption_channels=4096)
    want = sum(p.numel() for p in oracle.parameters())
    assert count_parameters(dense_config_equal_width(PTDiTConfig())) == want


@pytest.mark.parametrize("preset", ["tiny", "small", "qihoo-t2x-1.1b"])
def test_equal_params_depth_is_the_closest(preset):
    cfg = PRESETS[preset].config
    target = count_parameters(cfg)
    dense = dense_config_equal_params(cfg)
    assert dense.hidden_size == cfg.hidden_size
    here = abs(count_parameters(dense) - target)
    for layers in (dense.num_layers - 1, dense.num_layers + 1):  # counts grow with depth
        if layers >= 1:
            assert here <= abs(count_parameters(dense.replace(num_layers=layers)) - target), layers


def test_ptdit_config_builds_the_equal_width_baseline():
    model = DenseDiT(PRESETS["tiny"].config)
    assert model.config == dense_config_equal_width(PRESETS["tiny"].config)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        model(torch.zeros(1, 4, 1, 7, 8), torch.zeros(1), torch.zeros(1, 3, 64))
