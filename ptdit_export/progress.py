"""Numbered stages with the time each took, for long commands (export, build).

    stages = Stages(log)
    with stages("tracing"):
        ...
logs `[1] tracing` when a stage starts and `    tracing: 12.3 s` when it ends;
`stages.times` keeps the figures (benchmarks/bench_export.py reads the lines).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator


class Stages:
    def __init__(self, log: logging.Logger):
        self.log, self.times = log, {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        short = name.split(" (")[0]
        self.log.info("[%d] %s", len(self.times) + 1, name)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.times[short] = time.perf_counter() - t
            self.log.info("    %s: %.1f s", short, self.times[short])
