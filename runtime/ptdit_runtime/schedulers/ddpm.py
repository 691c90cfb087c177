"""The discrete DDPM schedule shared by DDIM and DPM-Solver++: betas, alpha_bar, timestep lists.

Everything is computed in float64. Timestep spacings follow the conventions users know from
diffusers for each sampler (they differ between DDIM and DPM-Solver for "leading" and
"linspace"): see `ddim_timesteps` and `dpm_timesteps`.
"""

from __future__ import annotations

import math

import numpy as np

from ptdit_runtime.configs import SchedulerConfig


def betas(config: SchedulerConfig) -> np.ndarray:
    """float64 [N] noise schedule."""
    n, b0, b1 = config.num_train_timesteps, config.beta_start, config.beta_end
    if config.beta_schedule == "linear":
        return np.linspace(b0, b1, n, dtype=np.float64)
    if config.beta_schedule == "scaled_linear":  # linear in sqrt(beta)
        return np.linspace(b0**0.5, b1**0.5, n, dtype=np.float64) ** 2
    # squaredcos_cap_v2: alpha_bar(s) = cos^2((s + 0.008) / 1.008 * pi / 2), betas capped at 0.999

    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], dtype=np.float64
    )


def alphas_cumprod(config: SchedulerConfig) -> np.ndarray:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), float64 [N]."""
    return np.cumprod(1.0 - betas(config))


def check_steps(config: SchedulerConfig, steps: int) -> None:
    if not 1 <= steps <= config.num_train_timesteps:
        raise ValueError(
            f"steps={steps}: a {config.kind} schedule takes 1..{config.num_train_timesteps} steps"
        )


def ddim_timesteps(config: SchedulerConfig, steps: int) -> np.ndarray:
    """int64 [steps], descending; DDIM's spacings ("linspace" ends on t = 0)."""
    check_steps(config, steps)
    n = config.num_train_timesteps
    if config.spacing == "leading":
        t = np.arange(steps)[::-1] * (n // steps) + config.steps_offset
    elif config.spacing == "trailing":
        t = np.round(np.arange(n, 0, -n / steps)) - 1
    else:
        t = np.round(np.linspace(0, n - 1, steps))[::-1]
    return t.astype(np.int64)


def dpm_timesteps(config: SchedulerConfig, steps: int) -> np.ndarray:
    """int64 [steps], descending; DPM-Solver's spacings (steps + 1 points, the clean end dropped)."""
    check_steps(config, steps)
    n = config.num_train_timesteps
    if config.spacing == "leading":
        t = (np.arange(steps + 1) * (n // (steps + 1)))[::-1][:-1] + config.steps_offset
    elif config.spacing == "trailing":
        t = np.round(np.arange(n, 0, -n / steps)) - 1
    else:
        t = np.round(np.linspace(0, n - 1, steps + 1))[::-1][:-1]
    return t.astype(np.int64)


def split_prediction(
    prediction_type: str, x: np.ndarray, out: np.ndarray, alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """(x0, eps) from the model output at a point x = alpha*x0 + sigma*eps."""
    if prediction_type == "v_prediction":  # v = alpha*eps - sigma*x0
        return alpha * x - sigma * out, alpha * out + sigma * x
    if prediction_type == "epsilon":
        return (x - sigma * out) / alpha, out
    raise ValueError(f"prediction_type {prediction_type!r} is not one of 'v_prediction', 'epsilon'")
