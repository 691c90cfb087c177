"""Benchmarks print the load average before and after, and warn when it is above their threads."""

from __future__ import annotations

import os
import random

from ptdit_export.bench import load


def test_report_quotes_getloadavg_and_warns_above_the_thread_count(monkeypatch):
    r = random.Random(7)
    for _ in range(20):
        threads = r.randint(1, 16)
        averages = tuple(round(r.uniform(0, 2 * threads), 2) for _ in range(3))
        monkeypatch.setattr(os, "getloadavg", lambda a=averages: a)
        text = load.load_report("after", threads)
        first = text.splitlines()[0]
        assert first.startswith("load average after: ") and f"{threads} threads" in first
        assert [float(v) for v in first.split(": ")[1].split()[:3]] == list(averages)
        assert ("WARNING" in text) == (averages[0] > threads), (averages, threads, text)


def test_platform_without_load_average(monkeypatch):
    def missing():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", missing)
    assert load.load_average() is None
    assert load.load_report("before", 2) == "load average before: unavailable on this platform"
