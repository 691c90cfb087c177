"""Samplers in NumPy. `make_sampler(config, steps, ...)` starts one sampling run.

A run exposes `timesteps` (float32 [steps], what the model sees at each step) and
`step(i, x, prediction) -> x_next`, where `prediction` is the model's output already reduced
to the latent channels and guided. The run keeps the history a multistep solver needs, so
start a new run for every generation.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ptdit_runtime.configs import SchedulerConfig


class Sampler(Protocol):
    timesteps: np.ndarray

    def step(self, i: int, x: np.ndarray, prediction: np.ndarray) -> np.ndarray: ...


def make_sampler(
    config: SchedulerConfig, steps: int, height: int = 512, width: int = 512, frames: int = 1
) -> Sampler:
    """A fresh run of `steps` steps; height, width (pixels) and frames drive rflow's shift."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    if config.kind == "rflow":
        from ptdit_runtime.schedulers.rflow import RFlowSampler

        return RFlowSampler(config, steps, height, width, frames)
    if config.kind == "ddim":
        from ptdit_runtime.schedulers.ddim import DDIMSampler

        return DDIMSampler(config, steps)
    from ptdit_runtime.schedulers.dpmsolver import DPMSolverPP2MSampler

    return DPMSolverPP2MSampler(config, steps)


__all__ = ["Sampler", "SchedulerConfig", "make_sampler"]
