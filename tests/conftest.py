"""Shared test helpers: markers, GPU skip, one assert_close with a short mismatch report."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _trace_cache(tmp_path_factory):
    """One-block traces shared by the session's exports (and the CLIs they start), never the
    user's own cache."""
    os.environ["PTDIT_EXPORT_CACHE_DIR"] = str(tmp_path_factory.mktemp("trace-cache"))


def has_cuda() -> bool:
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if has_cuda():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def rel_max_error(actual, expected) -> float:
    """max |a - e| / max |e|, the project's parity measure."""
    a = torch.as_tensor(actual).double()
    e = torch.as_tensor(expected).double()
    return float((a - e).abs().max() / e.abs().max().clamp_min(1e-30))


def assert_close(actual, expected, rel: float, what: str = "output") -> None:
    """Fail with a short report when the relative max error exceeds `rel`."""
    a, e = torch.as_tensor(actual), torch.as_tensor(expected)
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    err = rel_max_error(a, e)
    assert err <= rel, (
        f"{what}: relative max error {err:.3e} > {rel:.1e} (max |expected| {e.abs().max():.3e})"
    )


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (zero-initialised ones included) a random value of sensible scale."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim > 1 and "table" not in name:
                std = p[0].numel() ** -0.5
            else:
                std = 0.2
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
