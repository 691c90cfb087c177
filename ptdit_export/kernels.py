"""The fused CUDA kernels of PT-DiT's custom ops, callable on torch tensors.

A ctypes binding of ``libptdit_kernels.so`` (built by CMake from ``plugins/``; the TensorRT
plugins wrap the same kernels). Function signatures mirror the torch references in
``ptdit_export.ops.REFERENCES``, so the two can be compared directly::

    from ptdit_export import kernels
    out = kernels.shifted_window_attention(q, k, v, grid=(1, 64, 64), num_heads=16, window=(1, 8, 8))

The library is found at ``$PTDIT_KERNELS_LIB`` or ``<repo>/build/lib/libptdit_kernels.so``;
:func:`build_library` builds it. torch is imported only by the functions that take tensors.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUILD_DIR = REPO_ROOT / "build"
LIBRARY_NAME = "libptdit_kernels.so"
PLUGIN_LIBRARY_NAME = "libptdit_plugins.so"
LIBRARY_ENV = "PTDIT_KERNELS_LIB"
ABI_VERSION = 1  # PTDIT_KERNELS_ABI_VERSION in plugins/common/ptdit_kernels.h

_DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2}  # enum ptdit_dtype


class KernelError(RuntimeError):
    """A kernel call was rejected (unsupported size, dtype, layout) or failed to launch."""


# ------------------------------------------------------------------ building and loading
def build_library(
    build_dir: str | Path | None = None,
    cuda_architectures: str | None = None,
    tensorrt_include_dir: str | Path | None = None,
    jobs: int | None = None,
    targets: Sequence[str] = ("ptdit_kernels",),
) -> Path:
    """Configure and build the native libraries with CMake; returns the kernels library path.

    `cuda_architectures` is CMake's list (e.g. "90", "80;90"); None keeps the default
    (sm_80, 86, 89, 90). `tensorrt_include_dir` enables libptdit_plugins.so (add
    "ptdit_plugins" to `targets`).
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        raise KernelError(
            "cmake not found: install CMake >= 3.24 (e.g. `pip install cmake`) to build kernels"
        )
    build_dir = Path(build_dir) if build_dir is not None else DEFAULT_BUILD_DIR
    configure = [cmake, "-S", str(REPO_ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"]
    if cuda_architectures:
        configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={cuda_architectures}")
    if tensorrt_include_dir:
        configure.append(f"-DTENSORRT_INCLUDE_DIR={tensorrt_include_dir}")
    build = [cmake, "--build", str(build_dir), "-j", str(jobs or os.cpu_count() or 2)]
    for target in targets:
        build += ["--target", target]
    for cmd in (configure, build):
        log.info("running %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise KernelError(
                f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
    path = build_dir / "lib" / LIBRARY_NAME
    if not path.exists():
        raise KernelError(f"CMake found no CUDA compiler, so {path} was not built: install the CUDA toolkit")
    return path


_chosen: list[Path] = []  # set by use_library


def library_path() -> Path:
    """Where the kernels library is looked for: the one `use_library` chose, else
    $PTDIT_KERNELS_LIB, else build/lib/ of the repo."""
    if _chosen:
        return _chosen[-1]
    env = os.environ.get(LIBRARY_ENV)
    return Path(env) if env else DEFAULT_BUILD_DIR / "lib" / LIBRARY_NAME


def use_library(path: str | Path | None) -> None:
    """Make the op functions load `path` from now on (None: back to the default search)."""
    _chosen.clear()
    if path is not None:
        _chosen.append(Path(path))


def load_library(path: str | None = None) -> ctypes.CDLL:
    """Load libptdit_kernels.so (once per path; default `library_path()`) and declare its C signatures."""
    return _load(str(Path(path) if path else library_path()))


@cache
def _load(path: str) -> ctypes.CDLL:
    lib_path = Path(path)
    if not lib_path.exists():
        raise KernelError(
            f"{lib_path} not found: build it with `cmake -S . -B build && cmake --build build -j` "
            f"(or ptdit_export.kernels.build_library()), or point ${LIBRARY_ENV} at an existing copy"
        )
    lib = ctypes.CDLL(str(lib_path))
    i32, i64, ptr = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
    i32p = ctypes.POINTER(ctypes.c_int32)
    lib.ptdit_abi_version.restype = i32
    lib.ptdit_abi_version.argtypes = []
    lib.ptdit_last_error.restype = ctypes.c_char_p
    lib.ptdit_last_error.argtypes = []
    lib.ptdit_proxy_pool.restype = i32
    lib.ptdit_proxy_pool.argtypes = [ptr, ptr, i32, i64, i32, i32, i32p, i32p, ptr]
    lib.ptdit_window_attention.restype = i32
    lib.ptdit_window_attention.argtypes = [ptr, ptr, ptr, ptr, i32, i64, i32, i32, i32, ctypes.c_float, ptr]
    lib.ptdit_shifted_window_attention.restype = i32
    lib.ptdit_shifted_window_attention.argtypes = [
        ptr, ptr, ptr, ptr, ptr, i32, i64, i32, i32, i32, ctypes.c_float, i32p, ptr,
    ]  # fmt: skip
    lib.ptdit_shifted_window_index_map.restype = i32
    lib.ptdit_shifted_window_index_map.argtypes = [i32p, i32p, i32p, i32p]
    lib.ptdit_proxy_pool_members.restype = i32
    lib.ptdit_proxy_pool_members.argtypes = [i32p, i32p, i32p]
    abi = lib.ptdit_abi_version()
    if abi != ABI_VERSION:
        raise KernelError(f"{lib_path} has C API version {abi}, this module wants {ABI_VERSION}: rebuild it")
    return lib


load_library.cache_clear = _load.cache_clear  # type: ignore[attr-defined]  (tests reload builds)


def _check(lib: ctypes.CDLL, rc: int, what: str) -> None:
    if rc != 0:
        raise KernelError(f"{what}: {lib.ptdit_last_error().decode()} (code {rc})")


def _int3(values: Sequence[int], what: str) -> ctypes.Array:
    values = [int(v) for v in values]
    if len(values) != 3:
        raise KernelError(f"{what} must be three integers, got {values}")
    return (ctypes.c_int32 * 3)(*values)


def present_architecture() -> str:
    """CMake's architecture of CUDA device 0 ("90" on H100/H200): build for this GPU only."""
    import torch

    if not torch.cuda.is_available():
        raise KernelError("no CUDA device visible (torch.cuda.is_available() is False)")
    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}{minor}"


def unavailable(path: str | Path | None = None) -> str | None:
    """Why the fused kernels cannot run here, or None when they can: a CUDA device is visible
    and the library at `path` (default: `library_path()`) loads with the expected ABI."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device visible"
    try:
        load_library(str(path) if path else None)
    except (KernelError, OSError) as err:
        return str(err)
    return None


def unsupported(q: torch.Tensor, num_heads: int) -> str | None:
    """Why the attention kernels cannot take q [R, N, H*dh] (None: they can), from the limits
    of plugins/common/ptdit_kernels.h: dh a multiple of 8 up to 128, 1..1024 tokens, fp32/fp16/bf16."""
    if q.dim() != 3:
        return f"q has shape {tuple(q.shape)}, not [R, N, C]"
    _, n, c = q.shape
    if num_heads < 1 or c % num_heads:
        return f"{c} channels do not split into {num_heads} heads"
    head_dim = c // num_heads
    if head_dim % 8 or head_dim > 128:
        return f"head dim {head_dim} (the kernels take multiples of 8 up to 128)"
    if not 1 <= n <= 1024:
        return f"{n} tokens per window (the kernels take 1 to 1024)"
    if str(q.dtype).removeprefix("torch.") not in _DTYPE_CODES:
        return f"dtype {q.dtype} (the kernels take float32, float16, bfloat16)"
    return None


# ------------------------------------------------------------------ host views of the index math
def shifted_window_index_map(grid: Sequence[int], window: Sequence[int]) -> tuple[list[int], list[int]]:
    """(source, region) of one sample, as the shifted-window kernel computes them.

    source[w * N + t]: unshifted row (window * N + token) read by token t of shifted window w;
    region[w * N + t]: its Swin region id. Needs no GPU.
    """
    lib = load_library()
    g, w = _int3(grid, "grid"), _int3(window, "window")
    if min(g) < 1 or min(w) < 1:
        raise KernelError(f"grid {list(g)} and window {list(w)} must be positive")
    size = math.prod(g)
    source, region = (ctypes.c_int32 * size)(), (ctypes.c_int32 * size)()
    _check(lib, lib.ptdit_shifted_window_index_map(g, w, source, region), "shifted_window_index_map")
    return list(source), list(region)


def proxy_pool_members(window: Sequence[int], groups: Sequence[int]) -> list[list[int]]:
    """members[s] = window tokens averaged into proxy s, as the proxy-pool kernel reads them."""
    lib = load_library()
    w, g = _int3(window, "window"), _int3(groups, "groups")
    if min(w) < 1 or min(g) < 1:
        raise KernelError(f"window {list(w)} and groups {list(g)} must be positive")
    proxies, count = g[1] * g[2], w[0] * (w[1] // g[1]) * (w[2] // g[2])
    members = (ctypes.c_int32 * (proxies * count))()
    _check(lib, lib.ptdit_proxy_pool_members(w, g, members), "proxy_pool_members")
    return [list(members[s * count : (s + 1) * count]) for s in range(proxies)]


# ------------------------------------------------------------------ torch-facing ops
def _dtype_code(t: torch.Tensor) -> int:
    code = _DTYPE_CODES.get(str(t.dtype).removeprefix("torch."))
    if code is None:
        raise KernelError(f"dtype {t.dtype} is not supported: use float32, float16 or bfloat16")
    return code


def _prepare(tensors: Sequence[torch.Tensor], names: Sequence[str]) -> list[torch.Tensor]:
    first = tensors[0]
    if not first.is_cuda:
        raise KernelError(f"{names[0]} is on {first.device}: the kernels need CUDA tensors (use .cuda())")
    if first.dim() != 3:
        raise KernelError(f"{names[0]} has shape {tuple(first.shape)}: expected [R, N, C] (window-major)")
    for t, name in zip(tensors, names):
        if t.device != first.device or t.dtype != first.dtype or t.shape != first.shape:
            raise KernelError(
                f"{name} ({tuple(t.shape)}, {t.dtype}, {t.device}) must match {names[0]} "
                f"({tuple(first.shape)}, {first.dtype}, {first.device})"
            )
    return [t.contiguous() for t in tensors]


def _stream(device) -> int:
    import torch

    return torch.cuda.current_stream(device).cuda_stream


def proxy_pool(x: torch.Tensor, window: Sequence[int], groups: Sequence[int]) -> torch.Tensor:
    """PTDiTProxyPool: [R, N, C] -> [R, groups[1] * groups[2], C] (see ptdit_export.ops)."""
    import torch

    lib = load_library()
    (x,) = _prepare([x], ["x"])
    w, g = _int3(window, "window"), _int3(groups, "groups")
    r, n, c = x.shape
    out = torch.empty(r, max(g[1] * g[2], 0), c, device=x.device, dtype=x.dtype)
    with torch.cuda.device(x.device):
        stream = _stream(x.device)
        rc = lib.ptdit_proxy_pool(x.data_ptr(), out.data_ptr(), _dtype_code(x), r, n, c, w, g, stream)
    _check(lib, rc, "proxy_pool")
    return out


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, scale: float | None = None
) -> torch.Tensor:
    """PTDiTWindowAttention: softmax(q k^T * scale) v per window and head; scale defaults to 1/sqrt(dh)."""
    import torch

    lib = load_library()
    q, k, v = _prepare([q, k, v], ["q", "k", "v"])
    r, n, c = q.shape
    head_dim = c // num_heads if num_heads > 0 and c % num_heads == 0 else 0
    if head_dim == 0:
        raise KernelError(f"{c} channels do not split into {num_heads} heads")
    out = torch.empty_like(q)
    with torch.cuda.device(q.device):
        rc = lib.ptdit_window_attention(
            q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), _dtype_code(q), r, n, num_heads,
            head_dim, float(scale or 0.0), _stream(q.device),
        )  # fmt: skip
    _check(lib, rc, "window_attention")
    return out


_grid_cache: dict[tuple, torch.Tensor] = {}


def _device_grid(grid, device) -> torch.Tensor:
    """grid as a device int32[3]: a CUDA int32 tensor passes through, a tuple is uploaded once."""
    import torch

    if isinstance(grid, torch.Tensor) and grid.is_cuda:
        if grid.dtype != torch.int32 or grid.numel() != 3:
            raise KernelError(
                f"grid tensor must be int32 with 3 elements, not {grid.dtype} {tuple(grid.shape)}"
            )
        return grid.contiguous()
    values = tuple(int(g) for g in grid)
    key = (values, str(device))
    if key not in _grid_cache:
        _grid_cache[key] = torch.tensor(values, dtype=torch.int32, device=device)
    return _grid_cache[key]


def shifted_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid,
    num_heads: int,
    window: Sequence[int],
    scale: float | None = None,
) -> torch.Tensor:
    """PTDiTShiftedWindowAttention on the unshifted window-major layout.

    `grid` is (F, h, w) per sample, as ints or a CUDA int32 tensor of 3 elements (read by the
    kernel; an unsuitable grid gives NaN). Tuples are checked here first.
    """
    import torch

    lib = load_library()
    q, k, v = _prepare([q, k, v], ["q", "k", "v"])
    r, n, c = q.shape
    w = _int3(window, "window")
    head_dim = c // num_heads if num_heads > 0 and c % num_heads == 0 else 0
    if head_dim == 0:
        raise KernelError(f"{c} channels do not split into {num_heads} heads")
    if not isinstance(grid, torch.Tensor):
        f, h, wd = (int(g) for g in grid)
        if min(f, h, wd) < 1 or f % w[0] or h % w[1] or wd % w[2]:
            raise KernelError(f"grid {(f, h, wd)} must be positive multiples of window {tuple(w)}")
        windows = (f // w[0]) * (h // w[1]) * (wd // w[2])
        if r % windows:
            raise KernelError(f"{r} windows in q are not a whole number of samples of grid {(f, h, wd)}")
    grid_dev = _device_grid(grid, q.device)
    out = torch.empty_like(q)
    with torch.cuda.device(q.device):
        rc = lib.ptdit_shifted_window_attention(
            q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), grid_dev.data_ptr(), _dtype_code(q),
            r, n, num_heads, head_dim, float(scale or 0.0), w, _stream(q.device),
        )  # fmt: skip
    _check(lib, rc, "shifted_window_attention")
    return out
