"""DDIM (eta = 0) for v-prediction (or epsilon) models on the discrete DDPM schedule.

At step i the model sees the integer timestep t_i; with a = alpha_bar[t_i] the prediction
is split into (x0, eps) and the latents move to the next scheduled timestep:
x <- sqrt(a') x0 + sqrt(1 - a') eps, a' = alpha_bar[t_{i+1}], and after the last step
a' = 1 (set_alpha_to_one) or alpha_bar[0]. Where the steps divide the training timesteps
this equals diffusers' DDIMScheduler (which steps to t_i - N // steps instead of to the
next scheduled timestep; the two differ only for uneven spacings).
"""

from __future__ import annotations

import numpy as np

from ptdit_runtime.configs import SchedulerConfig
from ptdit_runtime.schedulers.ddpm import alphas_cumprod, ddim_timesteps, split_prediction


class DDIMSampler:
    def __init__(self, config: SchedulerConfig, steps: int):
        abar = alphas_cumprod(config)
        t = ddim_timesteps(config, steps)
        self.timesteps = t.astype(np.float32)  # (steps,) model input
        final = 1.0 if config.set_alpha_to_one else float(abar[0])
        self._abar = [float(abar[k]) for k in t]
        self._abar_next = self._abar[1:] + [final]
        self._prediction = config.prediction_type

    def step(self, i: int, x: np.ndarray, model_out: np.ndarray) -> np.ndarray:
        a, a_next = self._abar[i], self._abar_next[i]
        x0, eps = split_prediction(self._prediction, x, model_out, a**0.5, (1.0 - a) ** 0.5)
        return a_next**0.5 * x0 + (1.0 - a_next) ** 0.5 * eps
