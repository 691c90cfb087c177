"""The CUDA kernels against the torch references of the ops (ptdit_export.ops.REFERENCES).

All inputs random; each kernel output (in its own dtype) is compared with the reference run in
fp32 on the same rounded inputs, by the relative max error of tests/conftest.py.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from ptdit_export import kernels
from ptdit_export.ops import PROXY_POOL, REFERENCES, SHIFTED_WINDOW_ATTENTION, WINDOW_ATTENTION
from tests.conftest import assert_close

pytestmark = pytest.mark.gpu

# Proxy pooling sums in fp32 and rounds once: the error is half an ulp of the output dtype
# relative to max |out| (2^-11 fp16, 2^-8 bf16), with room for fp32 summation order.
POOL_TOL = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 5e-3}
# Attention also rounds the softmax probabilities to the input dtype before P @ V (as flash
# attention does): at most 2^-11 (fp16) / 2^-8 (bf16) of sum p|v| on top of the output rounding.
# For N(0, 1) inputs max |v| is ~4x max |out|, so the worst case is ~4 ulps; random signs make
# the typical error far smaller. fp32 runs on CUDA cores in fp32 throughout.
ATTENTION_TOL = {torch.float32: 2e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}

HALF_DTYPES = [torch.float16, torch.bfloat16]
HEAD_DIMS = [64, 72, 128]
BATCH = 2
# (grid, window): the release's image window, 256-token windows (4 key tiles, 4 query blocks),
# video windows, a single window along an axis, and windows below one 16-row mma tile.
GRIDS = [
    ((1, 16, 24), (1, 8, 8)),
    ((1, 32, 32), (1, 16, 16)),
    ((8, 8, 12), (4, 4, 4)),
    ((4, 16, 8), (2, 8, 8)),
    ((1, 8, 8), (1, 4, 4)),
    ((4, 4, 4), (2, 2, 2)),
]


@pytest.fixture(autouse=True)
def _library(kernels_lib):
    return kernels_lib


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def _windows(grid, window) -> int:
    return math.prod(g // w for g, w in zip(grid, window))


def _qkv(grid, window, heads, head_dim, dtype, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    shape = (BATCH * _windows(grid, window), math.prod(window), heads * head_dim)
    return [torch.randn(shape, generator=gen, device="cuda").to(dtype) for _ in range(3)]


def _random_heads_and_scale(seed, head_dim):
    gen = torch.Generator().manual_seed(seed)
    heads = int(torch.randint(1, 4, (1,), generator=gen))
    scale = float(torch.empty(1).uniform_(0.5, 1.5, generator=gen)) / math.sqrt(head_dim)
    return heads, scale


# ------------------------------------------------------------------ shifted-window attention
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("grid,window", GRIDS)
def test_shifted_window_attention_matches_reference(grid, window, head_dim, dtype):
    seed = _seed(grid, window, head_dim)
    heads, scale = _random_heads_and_scale(seed, head_dim)
    q, k, v = _qkv(grid, window, heads, head_dim, dtype, seed)
    out = kernels.shifted_window_attention(q, k, v, grid, heads, window, scale)
    ref = REFERENCES[SHIFTED_WINDOW_ATTENTION](q.float(), k.float(), v.float(), grid, heads, window, scale)
    assert out.dtype == dtype
    assert_close(out.float(), ref, ATTENTION_TOL[dtype], f"shifted attention {grid} {window} dh={head_dim}")


@pytest.mark.parametrize("grid,window", [GRIDS[0], GRIDS[2]])
def test_shifted_window_attention_fp32(grid, window):
    q, k, v = _qkv(grid, window, 2, 72, torch.float32, 7)
    out = kernels.shifted_window_attention(q, k, v, grid, 2, window)
    ref = REFERENCES[SHIFTED_WINDOW_ATTENTION](q, k, v, grid, 2, window)
    assert_close(out, ref, ATTENTION_TOL[torch.float32], "fp32 shifted attention")


def test_shifted_window_attention_reads_the_grid_from_the_device():
    grid, window = (1, 16, 24), (1, 8, 8)
    q, k, v = _qkv(grid, window, 2, 64, torch.float16, 3)
    from_tuple = kernels.shifted_window_attention(q, k, v, grid, 2, window)
    device_grid = torch.tensor(grid, dtype=torch.int32, device="cuda")
    assert torch.equal(kernels.shifted_window_attention(q, k, v, device_grid, 2, window), from_tuple)
    # a grid the window does not divide cannot be checked on the host: the kernel writes NaN
    bad = torch.tensor((1, 12, 32), dtype=torch.int32, device="cuda")
    assert torch.isnan(kernels.shifted_window_attention(q, k, v, bad, 2, window)).all()


def test_shifted_window_attention_differs_from_plain_window_attention():
    # the shift must matter: guards against a kernel that ignores the roll and the mask
    grid, window = (1, 16, 24), (1, 8, 8)
    q, k, v = _qkv(grid, window, 2, 64, torch.float16, 5)
    shifted = kernels.shifted_window_attention(q, k, v, grid, 2, window).float()
    plain = kernels.window_attention(q, k, v, 2).float()
    assert (shifted - plain).abs().max() > 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("grid", [(65536, 2048, 2048), (3, 2**15, 2**16), (1, 16, 16 + 8)])
def test_shifted_attention_with_a_device_grid_that_does_not_fit_writes_nan(grid, dtype):
    # windows per sample 2^32 (0 as int32), 3 * 2^30 (negative as int32), and 6 for a batch of 4:
    # the kernel must refuse all three on the device (no division by zero, no read outside q)
    window = (1, 8, 8) if grid[0] != 3 else (1, 1, 2)
    q, k, v = _qkv((1, 16, 16), window, 2, 64, dtype, 5)  # rows: 2 samples of a (1, 16, 16) grid
    device_grid = torch.tensor(grid, dtype=torch.int32, device="cuda")
    out = kernels.shifted_window_attention(q, k, v, device_grid, 2, window)
    torch.cuda.synchronize()  # an out-of-bounds read would surface here
    assert torch.isnan(out.float()).all()


# ------------------------------------------------------------------ window attention
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("grid,window", GRIDS)
def test_window_attention_matches_reference(grid, window, head_dim, dtype):
    seed = _seed(window, head_dim, "plain")
    heads, scale = _random_heads_and_scale(seed, head_dim)
    q, k, v = _qkv(grid, window, heads, head_dim, dtype, seed)
    out = kernels.window_attention(q, k, v, heads, scale)
    ref = REFERENCES[WINDOW_ATTENTION](q.float(), k.float(), v.float(), heads, scale)
    assert_close(out.float(), ref, ATTENTION_TOL[dtype], f"window attention {window} dh={head_dim}")


@pytest.mark.parametrize("head_dim", [16, 40, 88])
def test_window_attention_other_head_dims(head_dim):
    q, k, v = _qkv((1, 16, 16), (1, 8, 8), 2, head_dim, torch.bfloat16, head_dim)
    ref = REFERENCES[WINDOW_ATTENTION](q.float(), k.float(), v.float(), 2)
    out = kernels.window_attention(q, k, v, 2)
    assert_close(out.float(), ref, ATTENTION_TOL[torch.bfloat16], f"attention dh={head_dim}")


def test_window_attention_fp32():
    q, k, v = _qkv((2, 16, 16), (2, 8, 8), 3, 64, torch.float32, 11)
    ref = REFERENCES[WINDOW_ATTENTION](q, k, v, 3)
    assert_close(kernels.window_attention(q, k, v, 3), ref, ATTENTION_TOL[torch.float32], "fp32 attention")


def test_window_attention_rejects_misaligned_tensors():
    q, k, v = _qkv((1, 8, 8), (1, 8, 8), 1, 64, torch.float16, 0)
    flat = torch.empty(q.numel() + 1, dtype=q.dtype, device="cuda")
    shifted_q = flat[1:].view_as(q)  # contiguous, but 2 bytes past an aligned address
    shifted_q.copy_(q)
    with pytest.raises(kernels.KernelError, match="16-byte aligned"):
        kernels.window_attention(shifted_q, k, v, 1)


# ------------------------------------------------------------------ proxy pooling
@pytest.mark.parametrize("dtype", [torch.float32, *HALF_DTYPES])
@pytest.mark.parametrize(
    "window,groups",
    [((1, 8, 8), (1, 1, 1)), ((1, 8, 8), (1, 2, 2)), ((4, 8, 8), (1, 4, 2)), ((2, 4, 4), (1, 4, 4))],
)
@pytest.mark.parametrize("channels", [1152, 36, 7])  # 16-byte vectors, then scalar fallbacks
def test_proxy_pool_matches_reference(window, groups, channels, dtype):
    gen = torch.Generator(device="cuda").manual_seed(channels)
    x = torch.randn(BATCH * 6, math.prod(window), channels, generator=gen, device="cuda").to(dtype)
    out = kernels.proxy_pool(x, window, groups)
    ref = REFERENCES[PROXY_POOL](x.float(), window, groups)
    assert out.shape == (x.shape[0], groups[1] * groups[2], channels)
    assert_close(out.float(), ref, POOL_TOL[dtype], f"proxy pool {window} {groups} C={channels}")


def test_proxy_pool_unaligned_view_takes_the_scalar_path():
    x = torch.randn(4, 64, 1152, device="cuda", dtype=torch.float16)
    flat = torch.empty(x.numel() + 1, dtype=x.dtype, device="cuda")
    view = flat[1:].view_as(x)
    view.copy_(x)
    # same members, same fp32 summation order: bit-identical to the vectorised path
    window, groups = (1, 8, 8), (1, 2, 2)
    assert torch.equal(kernels.proxy_pool(view, window, groups), kernels.proxy_pool(x, window, groups))
