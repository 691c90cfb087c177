"""Timestep and 3-D position embeddings against their formulas."""

from __future__ import annotations

import math

import torch

from ptdit_export.model.embeddings import position_embedding_3d, timestep_features


def test_timestep_features_formula():
    t = torch.tensor([0.0, 1.0, 999.0, 421.5])
    got = timestep_features(t)
    for i, tv in enumerate(t.tolist()):
        for k in (0, 1, 17, 127):
            f = math.exp(-math.log(10000) * k / 128)
            assert abs(got[i, k].item() - math.cos(tv * f)) < 1e-4  # cos first
            assert abs(got[i, 128 + k].item() - math.sin(tv * f)) < 1e-4


def code(dim, p):
    return [math.sin(p / 10000 ** (k / (dim / 2))) for k in range(dim // 2)] + [
        math.cos(p / 10000 ** (k / (dim / 2))) for k in range(dim // 2)
    ]


def test_position_code_formula_including_the_non_square_quirk():
    d, f, h, w = 32, 2, 3, 5  # non-square on purpose
    got = position_embedding_3d(d, f, h, w, scale=1.0)
    assert got.shape == (f, h * w, d)
    for fi in range(f):
        for k in range(h * w):
            # token k (row k // w, column k % w) is coded with (k mod h, k div h), as released
            want = code(d // 4, fi) + code(3 * d // 8, k % h) + code(3 * d // 8, k // h)
            torch.testing.assert_close(
                got[fi, k], torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12
            )


def test_position_code_square_grid_is_column_row():
    d, h = 32, 4
    got = position_embedding_3d(d, 1, h, h, scale=2.0)
    row, col = 1, 3
    want = code(d // 4, 0) + code(3 * d // 8, col / 2) + code(3 * d // 8, row / 2)
    torch.testing.assert_close(
        got[0, row * h + col], torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12
    )
