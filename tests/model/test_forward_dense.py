"""The full PT-DiT forward against the dense re-implementation in dense_reference.py."""

from __future__ import annotations

import pytest
import torch

from ptdit_export.model import PTDiT, PTDiTConfig
from tests.conftest import assert_close, randomise
from tests.model import dense_reference

# fp32 model vs fp64 dense maths: the parity bound for the reference model.
FP32_REL = 1e-4

BASE = dict(
    num_heads=2,
    head_dim=16,
    num_layers=2,
    cross_attention_dim=32,
    caption_channels=24,
    sample_size=16,
    compress_ratios=(1, 4, 4),
    proxy_compress_ratios=(1, 4, 4),
)

CASES = {
    "square": (dict(), (1, 1, 16, 16)),
    "non-square, batch 2": (dict(), (2, 1, 16, 24)),
    "proxy window smaller than window": (dict(proxy_compress_ratios=(1, 2, 2)), (2, 1, 16, 24)),
    "asymmetric proxy groups": (dict(proxy_compress_ratios=(1, 4, 2)), (1, 1, 24, 16)),
    "video window (2,2,4)": (dict(compress_ratios=(2, 2, 4), proxy_compress_ratios=(2, 1, 2)), (2, 4, 8, 16)),
    "odd window 3x2": (dict(compress_ratios=(1, 3, 2), proxy_compress_ratios=(1, 3, 2)), (2, 1, 12, 8)),
    "no shift, geglu, affine norms": (
        dict(shift_window=False, activation_fn="geglu", norm_elementwise_affine=True, attention_bias=False),
        (2, 1, 8, 16),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_dense_reimplementation(name):
    over, (b, f, h, w) = CASES[name]
    model = randomise(PTDiT(PTDiTConfig(**{**BASE, **over}))).eval()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(b, 4, f, h, w, generator=g)
    t = torch.rand(b, generator=g) * 1000  # distinct timesteps per sample
    text = torch.randn(b, 6, 24, generator=g)
    mask = torch.ones(b, 6)
    mask[-1, 3:] = 0  # padded caption on the last sample
    with torch.no_grad():
        got = model(x, t, text, mask)
    want = dense_reference.forward(model, x, t, text, mask)
    assert got.dtype == torch.float32 and got.shape == (b, 8, f, h, w)
    assert_close(got, want, FP32_REL, name)


def test_every_branch_contributes():
    """Zeroing any branch's output projection changes the output (the branches are live)."""
    model = randomise(PTDiT(PTDiTConfig(**BASE))).eval()
    g = torch.Generator().manual_seed(3)
    args = (
        torch.randn(1, 4, 1, 16, 16, generator=g),
        torch.tensor([300.0]),
        torch.randn(1, 5, 24, generator=g),
    )
    with torch.no_grad():
        base = model(*args)
        for name in (
            "linear_1_visual",
            "linear_2",
            "attn1.to_out.0",
            "attn2.to_out.0",
            "proxy_attn1.to_out.0",
        ):
            blk = model.transformer_blocks[0].get_submodule(name)
            saved = blk.weight.clone()
            blk.weight.zero_()
            assert (model(*args) - base).abs().max() > 1e-4, name
            blk.weight.copy_(saved)
