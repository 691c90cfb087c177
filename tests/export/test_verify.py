"""verify's shape rules against brute-force enumeration of the shapes a profile allows (no export)."""

from __future__ import annotations

import random

import pytest

from ptdit_export.export.transformer import ExportSettings
from ptdit_export.export.verify import ShapeError, ShapeRules, default_shapes


def allowed_values(lo: int, hi: int, step: int) -> list[int]:
    return [v for v in range(lo, hi + 1) if v % step == 0]


def random_rules(r: random.Random) -> ShapeRules:
    ranges, steps = [], []
    for _ in range(5):
        step = r.choice([1, 1, 2, 4, 8])
        lo = r.randint(1, 40)
        hi = r.randint(lo, lo + 40)
        ranges.append((lo, hi))
        steps.append(step)
    return ShapeRules(tuple(ranges), tuple(steps))


@pytest.mark.parametrize("seed", range(5))
def test_problems_and_nearest_match_enumeration(seed):
    r = random.Random(seed)
    for _ in range(200):
        rules = random_rules(r)
        shape = tuple(r.randint(1, 90) for _ in range(5))
        values = [allowed_values(lo, hi, st) for (lo, hi), st in zip(rules.ranges, rules.steps)]
        fits = all(v in vals for v, vals in zip(shape, values))
        assert (rules.problems(shape) == []) == fits, (rules, shape)
        if not all(values):
            with pytest.raises(ShapeError, match="fits the recorded profiles"):
                rules.nearest(shape)
            continue
        # nearest: per dimension the closest allowed value, the smaller one on a tie
        want = tuple(min(vals, key=lambda a, v=v: (abs(a - v), a)) for v, vals in zip(shape, values))
        assert rules.nearest(shape) == want, (rules, shape)


def test_check_names_every_problem_and_the_ranges_in_one_line():
    rules = ShapeRules(((2, 8), (1, 1), (16, 16), (16, 32), (1, 16)), (1, 1, 8, 8, 1))
    with pytest.raises(ShapeError) as err:
        rules.check((1, 1, 10, 20, 5), "x/model.onnx")
    text = str(err.value)
    assert "\n" not in text
    for part in (
        "batch 1 is outside 2..8",
        "latent height 10 is outside 16..16",
        "latent width 20 is not a multiple of 8",
        "batch 2..8, frames 1, latent height 16 (multiples of 8), latent width 16..32 (multiples of 8)",
        "text length 1..16",
        "--shape 2 1 16 16 5",
    ):
        assert part in text
    rules.check((8, 1, 16, 32, 16), "x/model.onnx")  # the corners are fine


def test_default_shapes_stay_inside_a_demo_like_profile():
    """Built for 1..4 prompts with CFG (batch 2..8), 16 x 16 latents, captions up to 16 tokens."""
    rules = ShapeRules(((2, 8), (1, 1), (16, 16), (16, 16), (1, 16)), (1, 1, 8, 8, 1))
    settings = ExportSettings(batch=2, latent_height=16, latent_width=16, text_len=16)
    shapes = default_shapes(settings, rules)
    assert shapes[0] == (2, 1, 16, 16, 16)
    assert all(rules.problems(s) == [] for s in shapes) and len(set(shapes)) == len(shapes) == 3
    assert {s[0] for s in shapes} == {2, 3} and {s[4] for s in shapes} == {8, 16}
    static = ShapeRules(((2, 2), (1, 1), (16, 16), (16, 16), (8, 8)), (1, 1, 8, 8, 1))
    fixed = ExportSettings(batch=2, latent_height=16, latent_width=16, text_len=8, dynamic=False)
    assert default_shapes(fixed, static) == [(2, 1, 16, 16, 8)]
