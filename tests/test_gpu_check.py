"""benchmarks/gpu_check.sh: the CPU dry run CI runs, and how the summary records stage outcomes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny models on shared 2-core machines run ~15x faster than with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def helper():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is what a machine without a GPU does")
def test_dry_run_skips_every_stage_and_exits_0(tmp_path):
    out = tmp_path / "gpu-check"
    env = os.environ | {"PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    stages = summary["stages"]
    assert list(stages) == ["build", "plugin_tests", "kernel_bench", "model"]
    assert {(s["status"], s["detail"]) for s in stages.values()} == {("skipped", "no GPU")}
    assert all(g["met"] is None for g in summary["goals"].values())
    md = (out / "summary.md").read_text()
    for name in stages:
        assert re.search(rf"^\| {name} \| skipped: no GPU \|", md, re.MULTILINE), md


def test_shell_budgets_match_the_summary_and_fit_8_minutes():
    text = SCRIPT.read_text()
    budgets = {name: int(b) for name, b in re.findall(r"^stage (\w+) (\d+) ", text, re.MULTILINE)}
    assert budgets == {name: b for name, (_, b) in helper().STAGES.items()}
    assert sum(budgets.values()) + 5 * len(budgets) <= 480 - 30  # kill grace, start-up, summary


def test_failed_and_timed_out_stages_are_recorded_without_hiding_the_others(tmp_path):
    gc = helper()
    gc.record(tmp_path, "build", 0, 61.0, 150)
    gc.record(tmp_path, "plugin_tests", 1, 12.0, 90)
    gc.record(tmp_path, "kernel_bench", 124, 70.0, 70)
    # the model stage ran and wrote results; pick numbers that meet the time goal but not MFU
    gc.record(tmp_path, "model", 0, 80.0, 140)
    variants = {
        "sdpa": {"step_ms": 60.0, "loop_s": 1.9, "mfu": 0.3},
        "fused + CUDA graphs": {"step_ms": 30.0, "loop_s": 0.95, "mfu": 0.45},
        "fused": {"skipped": "no library"},
    }
    gc.write_results(tmp_path, "model", {"step_gflops": 1.0, "variants": variants})
    assert gc.summary(tmp_path) == 1  # a stage failed
    summary = json.loads((tmp_path / "summary.json").read_text())
    status = {k: (s["status"], s["detail"]) for k, s in summary["stages"].items()}
    assert status == {
        "build": ("ok", ""),
        "plugin_tests": ("failed", "exit code 1"),
        "kernel_bench": ("timeout", "over its 70 s budget"),
        "model": ("ok", ""),
    }
    goals = summary["goals"]
    assert goals["loop_seconds"] | {"goal": None} == {
        "goal": None, "measured": 0.95, "met": True, "variant": "fused + CUDA graphs"
    }  # fmt: skip
    assert goals["loop_mfu"]["met"] is False and goals["shifted_speedup"]["met"] is None
    md = (tmp_path / "summary.md").read_text()
    assert "| kernel_bench | timeout: over its 70 s budget |" in md
    assert "| fused | skipped: no library |" in md


def test_model_stage_runs_its_loop_on_a_tiny_model_on_the_cpu(tmp_path):
    """The model stage's code path (engine variants, loop, FLOPs, records) on the CPU: the fused
    variants skip with their reason, the others time a real 30-step guided loop."""
    from ptdit_export.flops import ptdit_flops
    from ptdit_export.model import load_config

    gc = helper()
    gc.model(tmp_path, preset="tiny", device="cpu", pixels=64)
    results = json.loads((tmp_path / "stages" / "model.results.json").read_text())
    flops = ptdit_flops(load_config("tiny"), (1, 8, 8), batch=2, text_len=gc.TEXT_LEN).total
    assert results["step_gflops"] == pytest.approx(flops / 1e9)
    assert results["loop_gflops"] == pytest.approx(30 * flops / 1e9)
    variants = results["variants"]
    assert variants["sdpa"]["loop_s"] > 0 and variants["sdpa"]["step_ms"] > 0
    assert variants["sdpa + CUDA graphs"]["rel_err_vs_sdpa"] == 0.0  # no graphs on the CPU: same path
    if not torch.cuda.is_available():
        assert variants["fused"] == {"skipped": "no CUDA device visible"}
