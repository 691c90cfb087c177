"""Machine load around a benchmark: os.getloadavg() before and after, a warning when it is busy.

A load average above the benchmark's thread count means other processes competed for the
cores while it ran (or were about to), so its times and even its ratios are suspect.
"""

from __future__ import annotations

import os


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15 minute load averages; None where the platform has none (Windows)."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def load_report(when: str, threads: int, load: tuple[float, float, float] | None = None) -> str:
    """One line, e.g. 'load average before: 0.41 0.35 0.30 (1/5/15 min), 2 threads', plus a
    warning when the 1-minute figure is above `threads`."""
    load = load_average() if load is None else load
    if load is None:
        return f"load average {when}: unavailable on this platform"
    line = f"load average {when}: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min), {threads} threads"
    if load[0] > threads:
        line += (
            f"\nWARNING: the 1-minute load average {load[0]:.2f} ({when}) is above the {threads} threads "
            "this benchmark uses: other processes compete for the cores, so its figures are unreliable; "
            "rerun on an idle machine"
        )
    return line
