"""The kernels' index arithmetic and argument checks, run on the CPU through the C API.

The host functions exercised here (ptdit_shifted_window_index_map, ptdit_proxy_pool_members)
call the very inline functions of plugins/common/window_index.cuh that the CUDA kernels call;
the expectation comes from the torch definition of the ops (ptdit_export.model.layout).
"""

from __future__ import annotations

import ctypes

import pytest
import torch

from ptdit_export import kernels
from ptdit_export.model import layout

pytestmark = pytest.mark.slow  # needs the kernels library built (about a minute)

# (grid, window): rolls that wrap on every axis, single windows along an axis, odd sizes
SHIFT_CASES = [
    ((1, 16, 24), (1, 8, 8)),
    ((1, 32, 32), (1, 16, 16)),
    ((8, 8, 12), (4, 4, 4)),
    ((4, 16, 8), (2, 8, 8)),
    ((4, 4, 4), (2, 2, 2)),
    ((3, 10, 15), (3, 5, 5)),
    ((2, 6, 9), (1, 3, 3)),
]


@pytest.mark.parametrize("grid,window", SHIFT_CASES)
def test_shifted_window_sources_are_the_rolled_grid(kernels_lib, grid, window):
    source, _ = kernels.shifted_window_index_map(grid, window)
    n = window[0] * window[1] * window[2]
    rows = torch.arange(grid[0] * grid[1] * grid[2]).reshape(-1, n, 1)  # unshifted row ids, one sample
    expected = layout.shift_windows(rows, grid, window)  # what token t of shifted window w reads
    assert source == expected.flatten().tolist()


@pytest.mark.parametrize("grid,window", SHIFT_CASES)
def test_shifted_window_regions_give_the_swin_mask(kernels_lib, grid, window):
    _, region = kernels.shifted_window_index_map(grid, window)
    n = window[0] * window[1] * window[2]
    labels = torch.tensor(region).reshape(-1, n)
    masked = labels[:, :, None] != labels[:, None, :]  # (nW, N, N)
    bias = layout.shift_region_bias(grid, window, torch.float32, torch.device("cpu"))
    assert torch.equal(masked, bias != 0)


POOL_CASES = [
    ((1, 8, 8), (1, 1, 1)),
    ((1, 8, 8), (1, 2, 2)),
    ((4, 8, 4), (1, 4, 2)),
    ((2, 4, 6), (1, 2, 3)),
    ((1, 4, 4), (1, 4, 4)),
]


@pytest.mark.parametrize("window,groups", POOL_CASES)
def test_proxy_members_are_the_strided_groups(kernels_lib, window, groups):
    members = kernels.proxy_pool_members(window, groups)
    n = window[0] * window[1] * window[2]
    pooled = layout.proxy_pool(torch.eye(n)[None].double(), window, groups)[0]  # (S, N): 1/M on members
    assert len(members) == pooled.shape[0]
    for s, tokens in enumerate(members):
        assert sorted(tokens) == torch.nonzero(pooled[s]).flatten().tolist()


def test_index_helpers_reject_windows_that_do_not_fit(kernels_lib):
    with pytest.raises(kernels.KernelError, match="not divisible"):
        kernels.shifted_window_index_map((1, 12, 12), (1, 8, 8))
    with pytest.raises(kernels.KernelError, match="groups"):
        kernels.proxy_pool_members((1, 8, 8), (1, 3, 3))


# ------------------------------------------------------------------ argument checks of the C API
# These fail before any CUDA call, so they run without a GPU (the null pointers are never read).
def _attention(lib, **kw):
    args = dict(dtype=1, rows=2, tokens=64, heads=16, head_dim=72, scale=0.0)
    args.update(kw)
    window = (ctypes.c_int32 * 3)(*kw.get("window", (1, 8, 8)))
    grid = ctypes.c_void_p(kw.get("grid", 16))  # any non-null device address; never read here
    nul = ctypes.c_void_p(kw.get("ptr", 0))
    sizes = [args[key] for key in ("dtype", "rows", "tokens", "heads", "head_dim", "scale")]
    rc = lib.ptdit_shifted_window_attention(nul, nul, nul, nul, grid, *sizes, window, None)
    return rc, lib.ptdit_last_error().decode()


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(head_dim=12), "head_dim 12 is not supported: use a multiple of 8 from 8 to 128"),
        (dict(head_dim=136), "head_dim 136 is not supported"),
        (dict(tokens=2048, window=(2, 32, 32)), "2048 tokens per window is not supported"),
        (dict(dtype=7), "dtype 7 is not float32"),
        (dict(window=(1, 8, 4)), "window must be three positive sizes whose product is the 64 tokens"),
        (dict(heads=0), "num_heads 0"),
        (dict(rows=2**26), "rows * tokens must lie in"),
        (dict(grid=0), "grid is null"),
        (dict(), "a tensor pointer is null"),
        (dict(ptr=8), "16-byte aligned"),
    ],
)
def test_attention_rejects_unsupported_arguments_with_a_clear_message(kernels_lib, change, message):
    rc, error = _attention(kernels.load_library(), **change)
    assert rc in (1, 2)
    assert message in error


def test_proxy_pool_rejects_a_window_that_does_not_match_the_tokens(kernels_lib):
    lib = kernels.load_library()
    window, groups = (ctypes.c_int32 * 3)(1, 8, 8), (ctypes.c_int32 * 3)(1, 2, 2)
    assert lib.ptdit_proxy_pool(None, None, 1, 2, 63, 1152, window, groups, None) == 1
    assert "does not hold the 63 tokens" in lib.ptdit_last_error().decode()
    bad_groups = (ctypes.c_int32 * 3)(2, 2, 2)
    assert lib.ptdit_proxy_pool(None, None, 1, 2, 64, 1152, window, bad_groups, None) == 1
    assert "groups[0] must be 1" in lib.ptdit_last_error().decode()


# ------------------------------------------------------------------ grids read on the device
def _check_grid(lib, grid, window, rows, tokens):
    lib.ptdit_check_shifted_grid.restype = ctypes.c_int32
    lib.ptdit_check_shifted_grid.argtypes = [
        ctypes.POINTER(ctypes.c_int32),
        ctypes.POINTER(ctypes.c_int32),
        ctypes.c_int64,
        ctypes.c_int32,
    ]
    rc = lib.ptdit_check_shifted_grid((ctypes.c_int32 * 3)(*grid), (ctypes.c_int32 * 3)(*window), rows, tokens)
    return rc, lib.ptdit_last_error().decode()


def _grid_fits(grid, window, rows, tokens) -> bool:
    """Reference in Python integers (no overflow): the grid describes `rows` windows of `tokens`."""
    if min(*grid, *window) < 1 or any(g % w for g, w in zip(grid, window)):
        return False
    windows = (grid[0] // window[0]) * (grid[1] // window[1]) * (grid[2] // window[2])
    return windows < 2**31 and window[0] * window[1] * window[2] == tokens and rows % windows == 0


def test_grid_check_agrees_with_integer_arithmetic_on_random_grids(kernels_lib):
    lib = kernels.load_library()
    rng = torch.Generator().manual_seed(0)
    fits = 0
    for _ in range(400):
        window = [int(x) for x in torch.randint(1, 9, (3,), generator=rng)]
        counts = [int(x) for x in torch.randint(1, 2**11, (3,), generator=rng)]  # products up to 2^33
        grid = [c * w for c, w in zip(counts, window)]
        if torch.rand(1, generator=rng) < 0.2:
            grid[int(torch.randint(0, 3, (1,), generator=rng))] += 1  # not divisible
        windows = counts[0] * counts[1] * counts[2]
        rows = windows * int(torch.randint(1, 4, (1,), generator=rng)) + int(torch.randint(0, 2, (1,), generator=rng))
        tokens = window[0] * window[1] * window[2]
        rc, error = _check_grid(lib, grid, window, rows, tokens)
        expected = _grid_fits(grid, window, rows, tokens)
        assert (rc == 0) == expected, (grid, window, rows, error)
        assert (error == "") == expected
        fits += expected
    assert 50 < fits < 350  # both outcomes well represented


def test_a_grid_whose_window_count_wraps_to_zero_in_32_bits_is_refused(kernels_lib):
    # (65536, 2048, 2048) in windows of (1, 8, 8): 65536 * 256 * 256 = 2^32 windows, 0 as int32
    lib = kernels.load_library()
    rc, error = _check_grid(lib, (65536, 2048, 2048), (1, 8, 8), 64, 64)
    assert rc == 1 and "fewer than 2^31 windows" in error
    # 3 * 2^30 windows: negative as int32
    rc, error = _check_grid(lib, (3, 2**15, 2**16), (1, 1, 2), 6, 2)
    assert rc == 1 and "fewer than 2^31 windows" in error
    # the host index map shares make_shift_geometry: it refuses the grid (it used to see 0
    # windows and return success); the one-entry buffers are never written
    grid, window = (ctypes.c_int32 * 3)(65536, 2048, 2048), (ctypes.c_int32 * 3)(1, 8, 8)
    source, region = (ctypes.c_int32 * 1)(), (ctypes.c_int32 * 1)()
    assert lib.ptdit_shifted_window_index_map(grid, window, source, region) == 1


def test_grid_check_names_what_does_not_match(kernels_lib):
    lib = kernels.load_library()
    assert _check_grid(lib, (1, 16, 16), (1, 8, 8), 8, 64) == (0, "")
    rc, error = _check_grid(lib, (1, 16, 16), (1, 8, 8), 6, 64)
    assert rc == 1 and "4 windows per sample, which do not divide the batch's 6 windows" in error
    rc, error = _check_grid(lib, (1, 16, 16), (1, 8, 8), 8, 32)
    assert rc == 1 and "does not hold the 32 tokens" in error


# ------------------------------------------------------------------ empty batches
def test_an_empty_batch_is_a_no_op_even_with_null_tensors(kernels_lib):
    lib = kernels.load_library()
    window, groups = (ctypes.c_int32 * 3)(1, 8, 8), (ctypes.c_int32 * 3)(1, 2, 2)
    assert lib.ptdit_proxy_pool(None, None, 1, 0, 64, 1152, window, groups, None) == 0
    assert lib.ptdit_window_attention(None, None, None, None, 1, 0, 64, 16, 72, 0.0, None) == 0
    rc = lib.ptdit_shifted_window_attention(None, None, None, None, None, 1, 0, 64, 16, 72, 0.0, window, None)
    assert rc == 0 and lib.ptdit_last_error() == b""
    # sizes are still checked for an empty batch
    assert lib.ptdit_window_attention(None, None, None, None, 1, 0, 64, 16, 12, 0.0, None) == 1
