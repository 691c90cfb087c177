"""The efficiency sweep's construction: points, windows, configs, skipping rules, interleaving.

Nothing here times anything. References are independent: token counts and windows from the
paper's numbers (Sec. 3.2.3), Eq. 4 written out, FLOP costs from ptdit_export.flops (itself
checked against FlopCounterMode in test_flops.py), memory from the process's own status.
"""

from __future__ import annotations

import dataclasses

import pytest

from ptdit_export.bench import cpu as bench_cpu
from ptdit_export.bench import sweep as bench
from ptdit_export.bench.run import run_sweep
from ptdit_export.bench.sweep import BenchSettings, SweepPoint
from ptdit_export.flops import model_flops
from ptdit_export.model.dense import DenseDiTConfig, count_parameters
from ptdit_export.model.presets import PRESETS

# Sec. 3.2.3: the window per image resolution; 8x VAE and 2x patch give (side / 16)^2 tokens
PAPER_WINDOWS = {256: (1, 2, 2), 512: (1, 4, 4), 1024: (1, 8, 8), 2048: (1, 16, 16)}


def _points(**kw) -> list[SweepPoint]:
    return bench.sweep_points(BenchSettings(**kw))


def test_default_sweep_spans_256_to_16384_tokens():
    points = _points()
    images = {p.resolution: p for p in points if p.kind == "image"}
    videos = [p for p in points if p.kind == "video"]
    assert [p.tokens for p in points] == sorted(p.tokens for p in points)
    assert min(p.tokens for p in points) == 256 and max(p.tokens for p in points) == 16384
    for res, p in images.items():
        assert p.tokens == (res // 16) ** 2
        assert p.grid == (1, res // 8, res // 8) and p.pixel_frames == 1
    assert [v.tokens for v in videos] == [f * 16 * 16 for f in (4, 16, 64)]
    assert [v.pixel_frames for v in videos] == [13, 61, 253]  # causal VAE: 1 + 4 (F - 1)


def test_windows_follow_the_paper_schedule():
    points = _points(resolutions=(256, 512, 768, 1024, 1536, 2048), video_frames=(4, 8))
    by_res = {p.resolution: p.window for p in points if p.kind == "image"}
    for res, window in PAPER_WINDOWS.items():
        assert by_res[res] == window
    assert by_res[768] == (1, 4, 4) and by_res[1536] == (1, 8, 8)  # octave at or below
    for p in points:
        if p.kind == "video":
            assert p.window == (4, 2, 2)  # temporal window 4, 256 px spatial window
    video512 = _points(resolutions=(), video_resolution=512, video_frames=(4,))
    assert video512[0].window == (4, 4, 4) and video512[0].tokens == 4 * 32 * 32


def test_point_eq4_is_the_paper_formula():
    for p in _points(resolutions=(256, 512, 1024, 2048), video_frames=(4, 64)):
        big_p = p.window[0] * p.window[1] * p.window[2]
        assert p.eq4 == pytest.approx(1 / big_p**2 + 1 / big_p + 2 * big_p / p.tokens, rel=1e-12)
    quoted = {256: 0.34375, 512: 0.09765625, 1024: 0.047119140625}  # Eq. 4 at the paper's settings
    for p in _points(resolutions=tuple(quoted), video_frames=()):
        assert p.eq4 == pytest.approx(quoted[p.resolution], rel=1e-12)


def test_sizes_that_do_not_fit_the_window_are_rejected():
    with pytest.raises(ValueError, match="multiple of 32 px"):
        _points(resolutions=(272,), video_frames=())
    with pytest.raises(ValueError, match="multiples of the temporal window 4"):
        BenchSettings(video_frames=(6,))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(device="tpu"), "cpu or cuda"),
        (dict(device="cuda", backends=("onnxruntime", "eager")), "eager only"),
        (dict(backends=("tensorrt",)), "choose from"),
        (dict(repeats=0), ">= 1"),
        (dict(layers=0), "--layers"),
    ],
)
def test_settings_reject_what_cannot_run(kw, match):
    with pytest.raises(ValueError, match=match):
        BenchSettings(**kw)


def test_model_depth_and_baselines():
    small = PRESETS["small"].config
    assert bench.base_config(BenchSettings()).num_layers == 1  # CPU default: reduced depth
    assert bench.base_config(BenchSettings(device="cuda", backends=("eager",))).num_layers == small.num_layers
    base = bench.base_config(BenchSettings(layers=2))
    assert base.num_layers == 2 and base.hidden_size == small.hidden_size == 384
    point = _points(resolutions=(2048,), video_frames=())[0]
    cfgs = bench.point_configs(base, point)
    pt, ew, ep = cfgs["pt-dit"], cfgs["dense-equal-width"], cfgs["dense-equal-params"]
    assert pt.compress_ratios == pt.proxy_compress_ratios == (1, 16, 16)
    assert isinstance(ew, DenseDiTConfig) and ew.num_layers == 2 and ew.hidden_size == 384
    assert ep.hidden_size == 384
    # equal params: no other depth of the same width comes closer to the PT-DiT's count
    target = count_parameters(pt)
    gap = abs(count_parameters(ep) - target)
    for layers in (ep.num_layers - 1, ep.num_layers + 1):
        assert abs(count_parameters(ep.replace(num_layers=layers)) - target) >= gap


def test_largest_attention_scores():
    point = _points(resolutions=(2048,), video_frames=())[0]  # N = 16384, window (1,16,16)
    cfgs = bench.point_configs(bench.base_config(BenchSettings()), point)
    n = 16384
    assert bench.largest_scores(cfgs["dense-equal-width"], point, 200) == n * n
    # PT-DiT: 64 proxies; proxies 64^2, proxy cross N*64, windows N*256, text N*200
    assert bench.largest_scores(cfgs["pt-dit"], point, 200) == n * 256
    assert bench.largest_scores(cfgs["pt-dit"], point, 300) == n * 300


def test_memory_prediction_counts_scores_only_where_they_are_written():
    s = BenchSettings()
    point = _points(resolutions=(2048,), video_frames=())[0]
    dense = bench.point_configs(bench.base_config(s), point)["dense-equal-width"]
    ort = bench.predicted_peak_bytes(dense, point, "onnxruntime", s)
    eager = bench.predicted_peak_bytes(dense, point, "eager", s)
    weights = count_parameters(dense) * 4
    heads, n = dense.num_heads, point.tokens
    extra_weights = (bench.WEIGHT_COPIES["onnxruntime"] - bench.WEIGHT_COPIES["eager"]) * weights
    assert ort - eager == bench.SCORE_COPIES * heads * n * n * 4 + extra_weights
    doubled = bench.predicted_peak_bytes(dense, point, "eager", dataclasses.replace(s, batch=2))
    assert doubled - eager == bench.ACTIVATION_COPIES * n * dense.hidden_size * 4


def test_skipping_rules():
    s = BenchSettings()
    base = bench.base_config(s)
    for point in bench.sweep_points(s):  # the default sweep runs everything
        for cfg in bench.point_configs(base, point).values():
            for backend in s.backends:
                assert bench.skip_reason(cfg, point, backend, s) is None

    big = [p for p in bench.sweep_points(s) if p.tokens == 16384]
    tight = dataclasses.replace(s, max_memory_gb=4.0)
    for point in big:
        cfgs = bench.point_configs(base, point)
        assert "predicted peak" in bench.skip_reason(cfgs["dense-equal-width"], point, "onnxruntime", tight)
        assert bench.skip_reason(cfgs["dense-equal-width"], point, "eager", tight) is None  # flash SDPA
        assert bench.skip_reason(cfgs["pt-dit"], point, "onnxruntime", tight) is None

    deep = dataclasses.replace(s, layers=6)
    point = big[0]
    for key, cfg in bench.point_configs(bench.base_config(deep), point).items():
        gflops = model_flops(cfg, point.grid, s.batch, s.text_len).total / 1e9
        reason = bench.skip_reason(cfg, point, "eager", deep)
        assert (reason is not None) == (gflops > deep.max_gflops), key
        if reason:
            assert "--max-gflops" in reason and f"{gflops:,.0f}" in reason
    assert bench.skip_reason(cfg, point, "eager", dataclasses.replace(deep, max_gflops=None)) is None


def test_gpu_budget_defaults_to_device_memory():
    s = BenchSettings(device="cuda", backends=("eager",), max_memory_gb=None, max_gflops=None)
    point = _points(resolutions=(2048,), video_frames=())[0]
    cfg = bench.point_configs(bench.base_config(s), point)["pt-dit"]
    need = bench.predicted_peak_bytes(cfg, point, "eager", s)
    assert s.dtype == "bf16"
    assert bench.skip_reason(cfg, point, "eager", s, gpu_bytes=int(need / 0.9) + 2**20) is None
    assert "budget" in bench.skip_reason(cfg, point, "eager", s, gpu_bytes=int(need / 0.9) - 2**20)


def test_interleaving_rotates_and_drops_warmup():
    calls: list[str] = []

    def run(name: str) -> float:
        calls.append(name)
        return float(len(calls))  # the call's position, as a stand-in for its duration

    times = bench.interleave(["a", "b", "c"], warmup=1, repeats=2, run=run)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert times == [[6.0, 8.0], [4.0, 9.0], [5.0, 7.0]]


def test_peak_tflops_lookup():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.peak_tflops("NVIDIA H200") == 989.0
    assert bench.peak_tflops("NVIDIA L4", given=121.0) == 121.0
    with pytest.raises(ValueError, match="--peak-tflops"):
        bench.peak_tflops("NVIDIA L4")


def test_high_water_mark_sees_a_new_allocation():
    rss = bench_cpu.vm_rss_kb()
    block = bytearray(b"\1") * (64 * 2**20)  # written, so every page is resident
    grown = bench_cpu.vm_rss_kb() - rss
    assert grown >= 48 * 1024
    assert bench_cpu.vm_hwm_kb() >= rss + grown  # the high-water mark covers the current resident set
    del block


def test_inputs_are_the_same_for_every_model_of_a_point():
    s = BenchSettings()
    point = _points(resolutions=(512,), video_frames=())[0]
    cfgs = bench.point_configs(bench.base_config(s), point)
    feeds = [bench.bench_inputs(c, point, 1, 200, 0) for c in cfgs.values()]
    for name in feeds[0]:
        for other in feeds[1:]:
            assert (other[name] == feeds[0][name]).all(), name
    assert feeds[0]["hidden_states"].shape == (1, 4, 1, 64, 64)
    assert feeds[0]["encoder_attention_mask"].all()


@pytest.mark.gpu
def test_cuda_sweep_reports_utilisation():
    s = BenchSettings(
        model="tiny", device="cuda", backends=("eager",), resolutions=(256,), video_frames=(),
        repeats=1, max_memory_gb=None, max_gflops=None, peak_tflops=989.0,
    )  # fmt: skip
    results = run_sweep(s)
    for key, run in results["points"][0]["runs"]["eager"].items():
        assert run["ms"] > 0 and run["peak_mb"] > 0, key
        assert 0 < run["mfu"] < 1, key  # analytic FLOPs over time cannot beat the device peak
