"""Rectified-flow Euler sampler of the released Qihoo-T2X model, with its timestep transform.

t_i = (1 - i/steps) * N for i = 0..steps-1 (N = num_train_timesteps), optionally rounded,
then shifted towards noise for large pictures: with s = t/N and ratio
r = sqrt(H*W / base_pixels) * sqrt(frame_factor) * transform_scale (H, W in pixels),
s' = r*s / (1 + (r - 1)*s) and t' = s'*N. The model sees t'; its velocity v points from
noise to data, so x <- x + v * (t'_i - t'_{i+1}) / N, the last step using t'_last / N.

frame_factor is 1 for images; for video the official code uses (frames // 17) * 5 with
`frames` the pixel frame count, which is 0 below 17 frames; that would collapse every
timestep to 0, so it is refused here with a message instead.
"""

from __future__ import annotations

import math

import numpy as np

from ptdit_runtime.configs import SchedulerConfig


def frame_factor(frames: int) -> int:
    """The official transform's temporal factor for `frames` pixel frames."""
    if frames == 1:
        return 1
    factor = (frames // 17) * 5
    if factor == 0:
        raise ValueError(
            f"the rectified-flow timestep transform is undefined for {frames} frames (the official "
            "factor (frames // 17) * 5 is 0 below 17 frames); generate 1 or >= 17 frames, or set "
            '"use_timestep_transform": false in scheduler/scheduler_config.json'
        )
    return factor


def shift_ratio(config: SchedulerConfig, height: int, width: int, frames: int) -> float:
    space = math.sqrt(height * width / config.base_pixels)
    return space * math.sqrt(frame_factor(frames)) * config.transform_scale


def rflow_timesteps(config: SchedulerConfig, steps: int, height: int, width: int, frames: int) -> np.ndarray:
    """float64 [steps]: the (transformed) timesteps in [0, N], descending."""
    n = config.num_train_timesteps
    t = (1.0 - np.arange(steps, dtype=np.float64) / steps) * n
    if config.use_discrete_timesteps:
        t = np.round(t)
    if config.use_timestep_transform:
        r = shift_ratio(config, height, width, frames)
        s = t / n
        t = r * s / (1.0 + (r - 1.0) * s) * n
    return t


class RFlowSampler:
    """One sampling run: `timesteps` to feed the model, `step` to advance the latents."""

    def __init__(self, config: SchedulerConfig, steps: int, height: int, width: int, frames: int):
        t = rflow_timesteps(config, steps, height, width, frames)
        self.timesteps = t.astype(np.float32)  # (steps,) model input, as the official float32 tensor
        nxt = np.append(t[1:], 0.0)
        self._dt = (t - nxt) / config.num_train_timesteps  # (steps,) float64

    def step(self, i: int, x: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """x_{i+1} = x_i + v * dt_i (dt_i > 0: v points from noise to data)."""
        return x + velocity * x.dtype.type(self._dt[i])
