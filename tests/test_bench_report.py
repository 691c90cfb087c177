"""Tables, goal check, Eq. 4 curve, plots and the document section, from hand-made results."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ptdit_export.bench import report as bench_report
from ptdit_export.cli.bench_cmd import bench as bench_cmd


def _run(ms: float, mb: float) -> dict:
    return {"ms": ms, "times_ms": [ms, ms], "peak_mb": mb, "loaded_mb": 10.0, "predicted_peak_mb": 2 * mb}


def _results() -> dict:
    """Two points; at 16,384 tokens the dense models under ORT were skipped (memory)."""
    skipped = {"predicted_peak_mb": 9000.0, "skipped": "predicted peak 9.4 GB > 8.0 GB budget"}
    return {
        "settings": {
            "model": "small", "backends": ["onnxruntime", "eager"], "device": "cpu", "threads": 1,
            "warmup": 1, "repeats": 2, "batch": 1, "text_len": 200, "max_memory_gb": 8.0, "max_gflops": 2000.0,
        },
        "environment": {
            "date": "2026-11-22 05:00 UTC", "cpu": "AMD EPYC", "cores": 2, "ram_gb": 23.5,
            "load_average": [1.0, 1.0, 1.0], "python": "3.11", "torch": "2.13", "onnxruntime": "1.31",
            "command": "ptdit-export bench", "sweep_minutes": 1.0,
        },
        "models": {
            "pt-dit": {"layers": 1, "hidden": 384, "parameters": 5_837_216},
            "dense-equal-width": {"layers": 1, "hidden": 384, "parameters": 3_766_304},
            "dense-equal-params": {"layers": 2, "hidden": 384, "parameters": 6_132_896},
        },
        "points": [
            {
                "kind": "image", "label": "image 1024 px", "resolution": 1024, "latent_frames": 1,
                "pixel_frames": 1, "grid": [1, 128, 128], "tokens": 4096, "window": [1, 8, 8],
                "eq4_ratio": 0.047119140625, "attention_ratio": 0.047119140625,
                "gflops": {"pt-dit": 30.0, "dense-equal-width": 40.0, "dense-equal-params": 80.0},
                "runs": {
                    "onnxruntime": {"pt-dit": _run(100, 50), "dense-equal-width": _run(200, 200),
                                    "dense-equal-params": _run(400, 250)},
                    "eager": {"pt-dit": _run(90, 60), "dense-equal-width": _run(100, 40),
                              "dense-equal-params": _run(180, 50)},
                },
                "parity": {"pt-dit": 1e-6, "dense-equal-width": 2e-6, "dense-equal-params": 2e-6},
            },
            {
                "kind": "image", "label": "image 2048 px", "resolution": 2048, "latent_frames": 1,
                "pixel_frames": 1, "grid": [1, 256, 256], "tokens": 16384, "window": [1, 16, 16],
                "eq4_ratio": 0.0351715087890625, "attention_ratio": 0.0351715087890625,
                "gflops": {"pt-dit": 120.0, "dense-equal-width": 480.0, "dense-equal-params": 960.0},
                "runs": {
                    "onnxruntime": {"pt-dit": _run(500, 300), "dense-equal-width": dict(skipped),
                                    "dense-equal-params": dict(skipped)},
                    "eager": {"pt-dit": _run(400, 300), "dense-equal-width": _run(1000, 500),
                              "dense-equal-params": _run(1900, 520)},
                },
                "parity": {"pt-dit": 1e-6},
            },
        ],
    }  # fmt: skip


def test_eq4_curve_is_the_formula():
    tokens = [256, 1024, 4096, 16384, 65536]
    for p in (4, 16, 64, 256):
        want = [1 / p**2 + 1 / p + 2 * p / n for n in tokens]
        assert bench_report.eq4_curve(p, tokens) == pytest.approx(want, rel=1e-12)
    # the paper's quoted 34.3 / 9.7 / 4.7 % are Eq. 4 truncated at (1,2,2)/(1,4,4)/(1,8,8)
    got = (
        bench_report.eq4_curve(4, [256])
        + bench_report.eq4_curve(16, [1024])
        + bench_report.eq4_curve(64, [4096])
    )
    assert [int(1000 * g) / 10 for g in got] == [34.3, 9.7, 4.7]


def test_ratios_and_missing_runs():
    r = _results()
    row4k, row16k = r["points"]
    assert bench_report.ratio(row4k, "onnxruntime") == pytest.approx(0.5)
    assert bench_report.ratio(row4k, "eager", "peak_mb", "dense-equal-params") == pytest.approx(60 / 50)
    assert bench_report.ratio(row16k, "onnxruntime") is None
    assert bench_report.flop_ratio(row16k) == pytest.approx(0.25)


def test_tables_carry_values_ratios_and_notes():
    text = bench_report.format_tables(_results())
    latency, memory = text.split("**Peak memory")
    rows = [line for line in latency.splitlines() if line.startswith("| image")]
    assert len(rows) == 2
    assert "100.0 / 200.0 / 400.0" in rows[0] and "90.0 / 100.0 / 180.0" in rows[0]
    assert "0.50 / 0.90 / 0.75" in rows[0]  # PT/EW: ORT 100/200, eager 90/100, FLOPs 30/40
    assert "0.25 / 0.50 / 0.38" in rows[0]  # PT/EP: 100/400, 90/180, 30/80
    assert "500.0 / n/r [1] / n/r [2]" in rows[1] and "– / 0.40 / 0.25" in rows[1]
    assert "4.71 %" in rows[0] and "(1,16,16)" in rows[1]
    assert "50 / 200 / 250" in memory and "0.25 / 1.50" in memory  # PT/EW memory: ORT 50/200, eager 60/40
    assert "1e-06 / 2e-06 / 2e-06" in memory
    assert "[1] EW ORT, image 2048 px: predicted peak 9.4 GB > 8.0 GB budget, not run" in text
    assert "[2] EP ORT, image 2048 px" in text
    header = [line for line in latency.splitlines() if line.startswith("| input")][0]
    assert header.count("|") - 1 == len(rows[0].split("|")) - 2  # every row fills every column


def test_goal_check():
    checks = bench_report.goal_check(_results())
    by = {(c["tokens"], c["backend"]): c for c in checks}
    assert set(by) == {(4096, "onnxruntime"), (4096, "eager"), (16384, "onnxruntime"), (16384, "eager")}
    assert not by[(4096, "eager")]["goal_applies"] and by[(4096, "eager")]["met"] is None
    eager = by[(16384, "eager")]
    assert eager["time_ratio"] == pytest.approx(0.4) and eager["memory_ratio"] == pytest.approx(0.6)
    assert eager["met"] is False  # time 0.4 <= 0.6 but memory 0.6 > 0.5
    ort = by[(16384, "onnxruntime")]
    assert ort["met"] is None and "predicted peak" in ort["missing"][0]
    text = bench_report.format_goal(checks)
    assert "**not met**" in text and "not measured: EW: predicted peak" in text


def test_update_doc_rewrites_only_the_generated_section(tmp_path):
    doc = tmp_path / "b.md"
    bench_report.update_doc(doc, "first")
    assert bench_report.BEGIN in doc.read_text() and "first" in doc.read_text()
    doc.write_text(f"intro\n\n{bench_report.BEGIN}\nold\n{bench_report.END}\n\nreading by hand\n")
    bench_report.update_doc(doc, "new table")
    text = doc.read_text()
    assert text.startswith("intro") and text.rstrip().endswith("reading by hand")
    assert "new table" in text and "old" not in text
    bare = tmp_path / "c.md"
    bare.write_text("no markers\n")
    with pytest.raises(ValueError, match="bench:begin"):
        bench_report.update_doc(bare, "x")


def test_cli_renders_saved_results(tmp_path):
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(_results()))
    doc = tmp_path / "docs" / "bench.md"
    out = tmp_path / "docs"
    result = CliRunner().invoke(
        bench_cmd, ["--from-json", str(saved), "--out", str(out), "--doc", str(doc)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    for name in bench_report.PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = doc.read_text()
    assert "![efficiency_latency](efficiency_latency.png)" in text
    assert "AMD EPYC, 2 cores, 23.5 GB RAM" in text and "`ptdit-export bench`" in text
    assert "PT-DiT step time" in result.output


@pytest.mark.parametrize(
    "load, text",
    [
        (
            {"before": [0.93, 1.4, 1.71], "after": [1.0, 1.15, 1.41]},
            "load average (1/5/15 min) before 0.93 1.40 1.71, after 1.00 1.15 1.41 (idle)",
        ),
        ([4.57, 5.35, 5.35], "load average (1/5/15 min) at start 4.57 5.35 5.35 (machine shared)"),
        (None, "load average not recorded"),
    ],
    ids=["before-after", "older-runs", "missing"],
)
def test_section_states_the_load_average_as_recorded(load, text):
    """The sweep records {"before", "after"} (older results: one list); the header prints the
    figures, and "machine shared" only where the 1-minute load exceeded the cores (2 here)."""
    results = _results()
    results["environment"]["load_average"] = load
    assert f"; {text}." in bench_report.render_section(results)
