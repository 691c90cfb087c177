"""Calibration runs the runtime's sampler: every step of its schedule, reproducible by seed."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ptdit_export.model.presets import PRESETS
from ptdit_export.quant.calibrate import CalibrationSettings, sample_feeds


def _denoiser(calls):
    def denoise(feeds):
        calls.append(feeds["timestep"][0])
        x = feeds["hidden_states"]
        return np.concatenate([0.5 * x, x], axis=1)  # [velocity | second half], like the model

    return denoise


def test_every_step_of_the_schedule_is_recorded(caplog):
    from ptdit_export.builder.components import RELEASED_SCHEDULER
    from ptdit_runtime.configs import SchedulerConfig
    from ptdit_runtime.schedulers import make_sampler

    rng = np.random.default_rng(11)
    steps, prompts, batch = (int(v) for v in rng.integers(2, 6, 3))
    config = PRESETS["tiny"].config
    settings = CalibrationSettings(prompts=prompts, steps=steps, batch=batch, seed=int(rng.integers(100)))
    calls = []
    with caplog.at_level(logging.WARNING):
        feeds = sample_feeds(_denoiser(calls), config, "tiny", settings, vae_scale=8)
    assert "random caption embeddings" in caplog.text
    batches = -(-prompts // batch)
    assert len(feeds) == batches * steps
    size = config.sample_size * 8
    want = make_sampler(SchedulerConfig.from_dict(RELEASED_SCHEDULER), steps, size, size).timesteps
    np.testing.assert_allclose(np.array(calls[:steps]), np.asarray(want, np.float32))
    first = feeds[0]["hidden_states"]
    assert first.shape == (
        2 * min(batch, prompts),
        config.in_channels,
        1,
        config.sample_size,
        config.sample_size,
    )
    np.testing.assert_array_equal(first[: len(first) // 2], first[len(first) // 2 :])  # guided: x twice
    assert not np.array_equal(feeds[0]["hidden_states"], feeds[1]["hidden_states"])  # the sampler moved

    again = sample_feeds(_denoiser([]), config, "tiny", settings, vae_scale=8)
    for a, b in zip(feeds, again):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    other = sample_feeds(
        _denoiser([]),
        config,
        "tiny",
        CalibrationSettings(prompts=prompts, steps=steps, batch=batch, seed=settings.seed + 1),
    )
    assert not np.array_equal(other[0]["hidden_states"], feeds[0]["hidden_states"])


def test_prompts_file_needs_a_text_encoder(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog\n")
    settings = CalibrationSettings(prompts=2, steps=1, prompts_file=str(prompts))
    with pytest.raises(ValueError, match="needs a text encoder"):
        sample_feeds(_denoiser([]), PRESETS["tiny"].config, "tiny", settings)
    with pytest.raises(FileNotFoundError, match="not found"):
        sample_feeds(
            _denoiser([]),
            PRESETS["tiny"].config,
            "tiny",
            CalibrationSettings(prompts_file=str(tmp_path / "x")),
        )
