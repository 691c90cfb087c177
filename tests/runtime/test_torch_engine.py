"""The torch engine: fused-kernel dispatch, precision, folders from `build --backend torch`, CUDA.

On CPU the fused backend is driven through stand-in kernels: the PyTorch references of the ops
(`ptdit_export.ops.REFERENCES`, the definitions the CUDA kernels are tested against), wrapped to
count calls. The model under the fused backend takes a different path through the block
(unshifted q/k/v, gathered modulation rows), so matching the SDPA model proves the dispatch.
CUDA-only tests carry the gpu marker and skip without a GPU.
"""

from __future__ import annotations

import logging
import random
from collections import Counter

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ptdit_export import kernels
from ptdit_export.export.source import randomise_
from ptdit_export.model import PTDiT
from ptdit_export.model.attention import use_backend
from ptdit_export.model.presets import PRESETS
from ptdit_export.ops import PROXY_POOL, REFERENCES, SHIFTED_WINDOW_ATTENTION, WINDOW_ATTENTION
from ptdit_export.tolerances import tolerance
from ptdit_runtime.engines import load_engine, resolve_backend
from ptdit_runtime.engines.torch_cuda import resolve_attention
from ptdit_runtime.engines.torch_ref import TorchEngine
from tests.conftest import assert_close, rel_max_error
from tests.runtime import builders

# (window, proxy window) geometries: image windows, a proxy window smaller than the window, video
GEOMETRIES = [((1, 4, 4), (1, 2, 2)), ((1, 4, 4), (1, 4, 4)), ((2, 2, 2), (2, 2, 2)), ((1, 2, 4), (1, 1, 2))]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny models on shared 2-core machines run ~15x faster than with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fake_kernels(monkeypatch) -> Counter:
    """Replace the CUDA ops with their PyTorch references; count the calls."""
    calls: Counter = Counter()
    for name, op in (
        ("window_attention", WINDOW_ATTENTION),
        ("shifted_window_attention", SHIFTED_WINDOW_ATTENTION),
        ("proxy_pool", PROXY_POOL),
    ):
        ref = REFERENCES[op]

        def fake(*args, _ref=ref, _name=name, **kw):
            calls[_name] += 1
            return _ref(*args, **kw)

        monkeypatch.setattr(kernels, name, fake)
    return calls


# (heads, head dim): the hidden width must be a multiple of 16 (3-D sin-cos positions)
KERNEL_HEADS = [(1, 16), (2, 8), (2, 24), (3, 16), (1, 32), (4, 8)]
OTHER_HEADS = [(4, 4), (4, 12)]  # head dims that are not multiples of 8: no kernel takes them


def random_case(seed: int, head_choices=KERNEL_HEADS):
    """A randomised small PT-DiT (every parameter random) and inputs with a padded caption."""
    rnd = random.Random(seed)
    window, proxy = GEOMETRIES[seed % len(GEOMETRIES)]
    heads, head_dim = rnd.choice(head_choices)
    model = PTDiT.from_config(
        "tiny", num_heads=heads, head_dim=head_dim, cross_attention_dim=heads * head_dim,
        num_layers=rnd.choice([1, 2]), compress_ratios=window, proxy_compress_ratios=proxy,
        frame=window[0], in_channels=rnd.choice([3, 4]), out_channels=8,
    )  # fmt: skip
    randomise_(model, seed).eval()
    g = torch.Generator().manual_seed(seed)
    b, text_len = rnd.choice([1, 2]), rnd.choice([3, 7])
    f = window[0] * rnd.choice([1, 2])
    h, w = (2 * window[1] * rnd.choice([1, 2, 3]), 2 * window[2] * rnd.choice([1, 2]))
    cfg = model.config
    x = torch.randn(b, cfg.in_channels, f, h, w, generator=g)
    t = torch.rand(b, generator=g) * 1000
    text = torch.randn(b, text_len, cfg.caption_channels, generator=g)
    mask = torch.ones(b, text_len, dtype=torch.int64)
    mask[0, rnd.randint(1, text_len - 1) :] = 0
    return model, (x, t, text, mask)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_fused_backend_matches_sdpa_through_reference_kernels(fake_kernels, seed):
    model, args = random_case(seed)
    with torch.no_grad(), use_backend("sdpa"):
        want = model(*args)
    with torch.no_grad(), use_backend("fused"):
        got = model(*args)
    assert_close(got, want, tolerance("reference", "fp32"), f"fused vs sdpa, case {seed}")
    layers = model.config.num_layers
    assert fake_kernels == Counter(
        window_attention=layers, shifted_window_attention=layers, proxy_pool=layers
    )
    # the shift is live: the same model with the shifted kernel replaced by a plain one differs
    assert rel_max_error(got, model_without_shift(model, args)) > 1e-3


def model_without_shift(model, args):
    original = kernels.shifted_window_attention
    kernels.shifted_window_attention = lambda q, k, v, grid, heads, window, *a: REFERENCES[WINDOW_ATTENTION](
        q, k, v, heads
    )
    try:
        with torch.no_grad(), use_backend("fused"):
            return model(*args)
    finally:
        kernels.shifted_window_attention = original


def test_fused_backend_falls_back_to_sdpa_for_sizes_the_kernels_do_not_take(fake_kernels, caplog):
    model, args = random_case(1, OTHER_HEADS)
    with torch.no_grad(), use_backend("sdpa"):
        want = model(*args)
    with caplog.at_level(logging.WARNING), torch.no_grad(), use_backend("fused"):
        got = model(*args)
        model(*args)
    assert_close(got, want, tolerance("reference", "fp32"), "fused fallback vs sdpa")
    assert fake_kernels["window_attention"] == fake_kernels["shifted_window_attention"] == 0
    assert fake_kernels["proxy_pool"] == 2 * model.config.num_layers
    said = [r.getMessage() for r in caplog.records if "falls back to SDPA" in r.getMessage()]
    assert len(said) == 2 and all("head dim" in m for m in said)  # once per kind, not per call


def test_kernels_report_what_they_do_not_take():
    q = torch.zeros(4, 64, 3 * 72)
    assert kernels.unsupported(q, 3) is None
    assert "head dim 36" in kernels.unsupported(q, 6)
    assert "tokens" in kernels.unsupported(torch.zeros(1, 2048, 64), 1)
    assert "dtype" in kernels.unsupported(q.double(), 3)


# ------------------------------------------------------------------ attention choice
def test_attention_auto_is_sdpa_on_cpu_and_fused_needs_cuda():
    assert resolve_attention("auto", torch.device("cpu")) == "sdpa"
    assert resolve_attention("math", torch.device("cpu")) == "math"
    with pytest.raises(ValueError, match="device='cuda'"):
        resolve_attention("fused", torch.device("cpu"))
    with pytest.raises(ValueError, match="not one of"):
        resolve_attention("flash", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where no GPU is visible")
def test_attention_auto_falls_back_to_sdpa_once_without_the_kernels(caplog):
    with caplog.at_level(logging.WARNING):
        first = resolve_attention("auto", torch.device("cuda"))
        second = resolve_attention("auto", torch.device("cuda"))
    assert first == second == "sdpa"
    said = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(said) == 1 and "no CUDA device" in said[0].getMessage()


# ------------------------------------------------------------------ engine vs ONNX Runtime
def step_feeds(seed: int = 3):
    g = np.random.default_rng(seed)
    n = builders.LATENT
    mask = np.ones((2, builders.MAX_LENGTH), np.int64)
    mask[1, g.integers(2, builders.MAX_LENGTH) :] = 0
    return {
        "hidden_states": g.standard_normal((2, 12, 1, n, n)).astype(np.float32),
        "timestep": g.uniform(0, 1000, 2).astype(np.float32),
        "encoder_hidden_states": g.standard_normal((2, builders.MAX_LENGTH, 64)).astype(np.float32),
        "encoder_attention_mask": mask,
    }


def test_torch_engine_matches_onnxruntime(engine_dir, fake_kernels):
    """fp32 step of the randomised tiny model: torch engine (SDPA, then the fused dispatch) vs the
    exported graph on ONNX Runtime, within the written fp32 tolerance."""
    ort_engine = load_engine(engine_dir / "transformer", "onnxruntime", provider="cpu")
    engine = load_engine(engine_dir / "transformer", "torch")
    assert engine.attention == "sdpa" and engine.settings.dtype == "float32"
    for seed in (3, 4):
        feeds = step_feeds(seed)
        want = ort_engine.run(feeds)["model_output"]
        assert_close(engine.run(feeds)["model_output"], want, tolerance("onnx", "fp32"), "torch vs ORT")
        engine.attention = "fused"  # the CUDA dispatch, through the reference kernels
        assert_close(engine.run(feeds)["model_output"], want, tolerance("onnx", "fp32"), "fused vs ORT")
        engine.attention = "sdpa"
    assert fake_kernels["shifted_window_attention"] == 2 * builders.tiny_model().config.num_layers


def test_constant_inputs_stay_uploaded_while_the_same_array_is_passed(engine_dir):
    engine = TorchEngine(builders.tiny_model())
    feeds = step_feeds()
    first = engine.upload(feeds, constant=("encoder_hidden_states",))
    again = engine.upload(dict(feeds), constant=("encoder_hidden_states",))
    assert again[2] is first[2] and again[0] is not first[0]
    changed = dict(feeds, encoder_hidden_states=feeds["encoder_hidden_states"].copy())
    assert engine.upload(changed, constant=("encoder_hidden_states",))[2] is not first[2]


# ------------------------------------------------------------------ build --backend torch
@pytest.fixture(scope="module")
def torch_folders(tmp_path_factory):
    """`ptdit-export build --backend torch` of the tiny preset in fp32, fp16 and bf16."""
    from ptdit_export.cli import main

    root = tmp_path_factory.mktemp("torch-build")
    runner = CliRunner()
    out = {}
    for precision in ("fp32", "fp16", "bf16"):
        folder = root / precision
        args = ["build", "--backend", "torch", "--model", "tiny", "--seed", "7", "--out", str(folder)]
        result = runner.invoke(main, [*args, "--precision", precision, "--height", "128", "--width", "128"])
        assert result.exit_code == 0, result.output
        assert f"built for torch ({precision}" in result.output
        out[precision] = folder
    again = runner.invoke(main, [*args, "--precision", "bf16", "--height", "128", "--width", "128"])
    assert "up to date" in again.output  # last args: bf16, the same folder
    return out


def reference_model():
    model = PTDiT.from_config("tiny")
    return randomise_(model, 7).eval()  # the preset's random weights for --seed 7


def tiny_feeds(seed: int = 0):
    g = np.random.default_rng(seed)
    return {
        "hidden_states": g.standard_normal((2, 4, 1, 16, 16)).astype(np.float32),
        "timestep": np.full(2, g.uniform(0, 1000), np.float32),
        "encoder_hidden_states": g.standard_normal((2, 5, 64)).astype(np.float32),
        "encoder_attention_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64),
    }


def torch_out(model, feeds):
    with torch.no_grad():
        return model(*(torch.from_numpy(feeds[n]) for n in feeds)).float().numpy()


def test_torch_folder_runs_on_the_torch_engine(torch_folders):
    folder = torch_folders["fp32"] / "transformer"
    assert resolve_backend(folder) == "torch"  # torch.json and no ONNX model
    assert not list(folder.glob("*.onnx"))
    engine = load_engine(folder)
    assert engine.settings.cuda_graph and engine.settings.attention == "auto"
    feeds = tiny_feeds()
    assert_close(engine.run(feeds)["model_output"], torch_out(reference_model(), feeds), 1e-6, "fp32 folder")


def test_bf16_folder_is_the_model_in_bf16(torch_folders):
    from safetensors import safe_open

    folder = torch_folders["bf16"] / "transformer"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    feeds = tiny_feeds(1)
    got = load_engine(folder).run(feeds)["model_output"]
    np.testing.assert_array_equal(got, torch_out(reference_model().bfloat16(), feeds))


def test_fp16_folder_keeps_norms_and_modulation_in_fp32(torch_folders):
    from safetensors import safe_open

    folder = torch_folders["fp16"] / "transformer"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes["transformer_blocks.0.attn1.to_q.weight"] == torch.float16
    assert dtypes["transformer_blocks.0.scale_shift_table"] == torch.float32
    engine = load_engine(folder)
    assert engine.model.residual_dtype == torch.float32
    feeds = tiny_feeds(2)
    want = torch_out(reference_model(), feeds)
    assert_close(engine.run(feeds)["model_output"], want, tolerance("onnx", "fp16"), "fp16 folder vs fp32")


def test_build_torch_names_a_bad_model_in_one_line(tmp_path):
    from ptdit_export.cli import main

    result = CliRunner().invoke(
        main, ["build", "--backend", "torch", "--model", "nope", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2  # a usage error, found before any work
    assert result.output.strip().splitlines() == [
        f"Error: --model 'nope' is neither a preset ({', '.join(PRESETS)}) nor an existing "
        "checkpoint folder, weights file or config JSON"
    ]


def test_generate_passes_the_device_to_the_torch_engine(engine_dir):
    from ptdit_export.cli import main

    args = ["generate", "a red circle", "--engine-dir", str(engine_dir), "--backend", "torch"]
    result = CliRunner().invoke(main, [*args, "--device", "cuda", "--steps", "2"])
    if torch.cuda.is_available():
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1
        assert "Error: device 'cuda': torch.cuda.is_available() is False" in result.output


# ------------------------------------------------------------------ CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cuda_fused_and_graphs_match_sdpa(dtype, tmp_path):
    """Real kernels and CUDA graphs against the eager SDPA engine on the same GPU (needs the
    kernels library: $PTDIT_KERNELS_LIB or build/lib, else the fused case skips)."""
    reason = kernels.unavailable()
    if reason:
        pytest.skip(f"fused kernels unavailable: {reason}")
    model = randomise_(PTDiT.from_config("small"), 5).eval()
    eager = TorchEngine(model, device="cuda", dtype=dtype, attention="sdpa")
    fused = TorchEngine(model, device="cuda", dtype=dtype, attention="fused", cuda_graph=True)
    g = np.random.default_rng(0)
    for size in (64, 96, 64):  # a second shape captures a second graph; the first is replayed
        feeds = {
            "hidden_states": g.standard_normal((2, 4, 1, size, size)).astype(np.float32),
            "timestep": np.full(2, 500.0, np.float32),
            "encoder_hidden_states": g.standard_normal((2, 12, 256)).astype(np.float32),
            "encoder_attention_mask": np.ones((2, 12), np.int64),
        }
        want = eager.run(feeds)["model_output"]
        rel = {"bfloat16": 8e-2, "float16": 5e-2}[dtype]  # tolerances.py, onnx bf16 / fp16
        assert_close(fused.run(feeds)["model_output"], want, rel, f"fused + graphs {dtype} {size}")
    assert len(fused._step.graphs) == 2
