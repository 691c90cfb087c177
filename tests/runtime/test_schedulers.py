"""Each NumPy sampler over a full schedule against an independent implementation.

Oracles: diffusers' DDIMScheduler and DPMSolverMultistepScheduler (dpmsolver++, order 2,
v-prediction), and for rectified flow a torch loop written here from the formulas of the
official-implementation notes plus diffusers' FlowMatchEulerDiscreteScheduler with the same
shift. A fixed non-linear toy model drives both sides from the same start.

Tolerances (relative max error of the final sample): 1e-10 where both sides compute in
float64 (the torch rflow loop); 1e-5 against diffusers, whose schedules (alphas_cumprod,
sigmas) are float32 tensors and whose step() upcasts samples to float32 only, so it carries
float32 rounding (~6e-8 per coefficient) through the whole schedule.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ptdit_runtime.configs import SchedulerConfig
from ptdit_runtime.schedulers import make_sampler
from ptdit_runtime.schedulers.rflow import frame_factor, rflow_timesteps
from tests.conftest import assert_close

SHAPE = (2, 4, 1, 8, 8)
FP64_REL = 1e-10
DIFFUSERS_REL = 1e-5


def toy_model(x, t):
    """A fixed smooth function of (x, t), for numpy or torch inputs (t a scalar)."""
    lib = torch if isinstance(x, torch.Tensor) else np
    phase = math.sin(float(t) / 170.0)
    return 0.7 * lib.tanh(0.6 * x + 0.4 * phase) - 0.25 * x + 0.1 * math.cos(float(t) / 90.0)


def start_noise() -> np.ndarray:
    return np.random.Generator(np.random.PCG64(7)).standard_normal(SHAPE)  # float64


def run_numpy(config: SchedulerConfig, steps: int, **size) -> np.ndarray:
    sampler = make_sampler(config, steps, **size)
    x = start_noise()
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(i, x, toy_model(x, t))
    return x


def run_diffusers(scheduler, steps: int, sign: float = 1.0, **set_kwargs) -> np.ndarray:
    scheduler.set_timesteps(steps, **set_kwargs) if steps else scheduler.set_timesteps(**set_kwargs)
    x = torch.from_numpy(start_noise())
    for t in scheduler.timesteps:
        out = sign * toy_model(x, float(t))
        x = scheduler.step(out, t, x).prev_sample.double()
    return x.numpy()


# ---------------------------------------------------------------- rectified flow
def rflow_torch(steps: int, height: int, width: int, frames: int, transform: bool) -> np.ndarray:
    """The sampler of the notes, written in torch float64 from the formulas."""
    n = 1000
    ts = [(1.0 - i / steps) * n for i in range(steps)]
    ts = torch.tensor(ts, dtype=torch.float64)
    if transform:
        frames_term = 1.0 if frames == 1 else float(frames // 17 * 5)
        r = math.sqrt(height * width / 512**2) * math.sqrt(frames_term)
        s = ts / n
        ts = r * s / (1 + (r - 1) * s) * n
    x = torch.from_numpy(start_noise())
    for i in range(steps):
        v = toy_model(x, float(torch.tensor(float(ts[i]), dtype=torch.float32)))
        dt = (ts[i] - ts[i + 1]) if i < steps - 1 else ts[i]
        x = x + v * dt / n
    return x.numpy()


@pytest.mark.parametrize(
    "steps,height,width,frames,transform",
    [
        (30, 1024, 1024, 1, True),
        (30, 512, 768, 1, True),
        (12, 256, 256, 1, True),
        (20, 512, 512, 34, True),
        (25, 1024, 1024, 1, False),
    ],
)
def test_rflow_matches_formulas(steps, height, width, frames, transform):
    config = SchedulerConfig(kind="rflow", use_timestep_transform=transform)
    got = run_numpy(config, steps, height=height, width=width, frames=frames)
    assert_close(got, rflow_torch(steps, height, width, frames, transform), FP64_REL, "rflow final sample")


@pytest.mark.parametrize("steps,height,width", [(30, 1024, 1024), (20, 512, 768)])
def test_rflow_matches_diffusers_flow_match(steps, height, width):
    from diffusers import FlowMatchEulerDiscreteScheduler

    r = math.sqrt(height * width / 512**2)
    oracle = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=r)
    sigmas = [1.0 - i / steps for i in range(steps)]
    # diffusers' flow matching predicts noise - data, the release's velocity data - noise
    want = run_diffusers(oracle, None, sign=-1.0, sigmas=sigmas)
    got = run_numpy(SchedulerConfig(kind="rflow"), steps, height=height, width=width, frames=1)
    assert_close(got, want, DIFFUSERS_REL, "rflow vs FlowMatchEulerDiscreteScheduler")


def test_rflow_transform_values():
    """At 1024 px the ratio is 2: t'=2t/(1+t) on t/1000; at 512 px the transform is the identity."""
    config = SchedulerConfig()
    t = rflow_timesteps(config, 4, 1024, 1024, 1)
    s = np.array([1.0, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(t, 2 * s / (1 + s) * 1000, rtol=1e-12)
    np.testing.assert_allclose(rflow_timesteps(config, 4, 512, 512, 1), s * 1000, rtol=1e-12)
    assert frame_factor(1) == 1 and frame_factor(17) == 5 and frame_factor(51) == 15
    with pytest.raises(ValueError, match="use_timestep_transform"):
        frame_factor(8)


# ---------------------------------------------------------------- DDIM
@pytest.mark.parametrize(
    "steps,spacing,beta_schedule,prediction",
    [
        (50, "leading", "scaled_linear", "v_prediction"),
        (20, "trailing", "scaled_linear", "v_prediction"),
        (25, "leading", "linear", "v_prediction"),
        (20, "leading", "scaled_linear", "epsilon"),
    ],
)
def test_ddim_matches_diffusers(steps, spacing, beta_schedule, prediction):
    from diffusers import DDIMScheduler

    betas = dict(beta_schedule=beta_schedule, beta_start=0.00085, beta_end=0.012)
    if beta_schedule == "linear":
        betas.update(beta_start=0.0001, beta_end=0.02)
    oracle = DDIMScheduler(
        num_train_timesteps=1000,
        prediction_type=prediction,
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing=spacing,
        **betas,
    )
    config = SchedulerConfig(kind="ddim", prediction_type=prediction, timestep_spacing=spacing, **betas)
    sampler = make_sampler(config, steps)
    oracle.set_timesteps(steps)
    np.testing.assert_array_equal(sampler.timesteps, oracle.timesteps.numpy())
    assert_close(run_numpy(config, steps), run_diffusers(oracle, steps), DIFFUSERS_REL, "DDIM final sample")


# ---------------------------------------------------------------- DPM-Solver++ 2M
@pytest.mark.parametrize(
    "steps,spacing,beta_schedule",
    [
        (25, "linspace", "scaled_linear"),
        (10, "linspace", "scaled_linear"),
        (20, "trailing", "scaled_linear"),
        (20, "leading", "linear"),
        (30, "linspace", "squaredcos_cap_v2"),
    ],
)
def test_dpmpp2m_matches_diffusers(steps, spacing, beta_schedule):
    from diffusers import DPMSolverMultistepScheduler

    betas = dict(beta_schedule=beta_schedule, beta_start=0.00085, beta_end=0.012)
    if beta_schedule == "linear":
        betas.update(beta_start=0.0001, beta_end=0.02)
    oracle = DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type="v_prediction",
        timestep_spacing=spacing,
        final_sigmas_type="zero",
        **betas,
    )
    config = SchedulerConfig(
        kind="dpmpp2m", prediction_type="v_prediction", timestep_spacing=spacing, **betas
    )
    sampler = make_sampler(config, steps)
    oracle.set_timesteps(steps)
    np.testing.assert_array_equal(sampler.timesteps, oracle.timesteps.numpy())
    assert_close(
        run_numpy(config, steps), run_diffusers(oracle, steps), DIFFUSERS_REL, "DPM++ 2M final sample"
    )


def test_dpmpp2m_differs_from_first_order():
    """The second-order correction is really applied (guards against a silent DDIM-like solver)."""
    config = SchedulerConfig(kind="dpmpp2m", prediction_type="v_prediction")
    ddim = SchedulerConfig(kind="ddim", prediction_type="v_prediction", timestep_spacing="linspace")
    assert np.abs(run_numpy(config, 10) - run_numpy(ddim, 10)).max() > 1e-3


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="beta_schedule"):
        SchedulerConfig(kind="ddim", prediction_type="v_prediction", beta_schedule="cosine")
    with pytest.raises(ValueError, match="prediction_type"):
        SchedulerConfig(kind="ddim", prediction_type="flow")
    with pytest.raises(ValueError, match="steps"):
        make_sampler(SchedulerConfig(), 0)
    cfg = SchedulerConfig.from_dict({"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "linear"})
    assert cfg.kind == "dpmpp2m" and cfg.prediction_type == "v_prediction"
