"""Seeded starting noise, identical on every backend and machine.

Prompt i of a call with seed s starts from
`numpy.random.Generator(numpy.random.PCG64(s + i)).standard_normal(shape, dtype=numpy.float32)`
with shape (C, F, h, w); a list of seeds gives each prompt its own. The noise of a prompt
therefore does not depend on the other prompts of the batch, the backend or the batch split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def seeds_for(seed: int | Sequence[int], count: int) -> list[int]:
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(count)]
    seeds = [int(s) for s in seed]
    if len(seeds) != count:
        raise ValueError(f"got {len(seeds)} seeds for {count} prompts; pass one seed or one per prompt")
    return seeds


def initial_noise(seeds: Sequence[int], shape: tuple[int, ...]) -> np.ndarray:
    """float32 [len(seeds), *shape] standard normal noise."""
    return np.stack(
        [np.random.Generator(np.random.PCG64(s)).standard_normal(shape, dtype=np.float32) for s in seeds]
    )
