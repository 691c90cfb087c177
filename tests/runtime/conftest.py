"""Fixtures of the runtime tests: one tiny engine folder and one pipeline for the session."""

from __future__ import annotations

import pytest

from tests.runtime import builders


@pytest.fixture(scope="session")
def engine_dir():
    return builders.shared_engine_folder()


@pytest.fixture(scope="session")
def pipe(engine_dir):
    from ptdit_runtime import Pipeline

    pipeline = Pipeline.from_dir(engine_dir, backend="onnxruntime", provider="cpu")
    yield pipeline
    pipeline.close()
