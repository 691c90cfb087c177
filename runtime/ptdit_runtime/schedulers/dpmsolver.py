"""DPM-Solver++ (2M), the multistep second-order solver in data (x0) prediction.

With alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), lambda_t = log(alpha_t / sigma_t)
and the model's x0 prediction m_i at step i, the step from s = t_i to t = t_{i+1} is

  first order:  x <- (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) m_i,  h = lambda_t - lambda_s
  second order: the same with m_i replaced by m_i + (m_i - m_{i-1}) / (2 r), r = h_{i-1} / h

The first step has no history (first order). After the last timestep the solver lands on
the clean sample (sigma = 0, alpha = 1), where the first-order step is exactly x <- m_i; the
last step is therefore first order, as in diffusers' default (final_sigmas_type="zero").
"""

from __future__ import annotations

import math

import numpy as np

from ptdit_runtime.configs import SchedulerConfig
from ptdit_runtime.schedulers.ddpm import alphas_cumprod, dpm_timesteps, split_prediction


class DPMSolverPP2MSampler:
    def __init__(self, config: SchedulerConfig, steps: int):
        abar = alphas_cumprod(config)
        t = dpm_timesteps(config, steps)
        self.timesteps = t.astype(np.float32)  # (steps,) model input
        self._alpha = [math.sqrt(abar[k]) for k in t] + [1.0]
        self._sigma = [math.sqrt(1.0 - abar[k]) for k in t] + [0.0]
        self._lam = [math.log(a / s) for a, s in zip(self._alpha[:-1], self._sigma[:-1])] + [math.inf]
        self._prediction = config.prediction_type
        self._previous: np.ndarray | None = None  # m_{i-1}

    def step(self, i: int, x: np.ndarray, model_out: np.ndarray) -> np.ndarray:
        alpha_s, sigma_s = self._alpha[i], self._sigma[i]
        m, _ = split_prediction(self._prediction, x, model_out, alpha_s, sigma_s)
        previous, self._previous = self._previous, m
        alpha_t, sigma_t = self._alpha[i + 1], self._sigma[i + 1]
        if sigma_t == 0.0:  # landing on the clean sample: the limit of the first-order step
            return m
        h = self._lam[i + 1] - self._lam[i]
        if previous is not None and i > 0:
            r = (self._lam[i] - self._lam[i - 1]) / h
            m = m + (m - previous) * (0.5 / r)
        return (sigma_t / sigma_s) * x - alpha_t * math.expm1(-h) * m
