"""Builds of the native libraries, shared by the tests under tests/plugins.

One CMake configure + build per session into a temporary directory, for one CUDA
architecture (the GPU's own when there is one, sm_80 otherwise) to keep it short. Set
PTDIT_KERNELS_LIB to test an existing libptdit_kernels.so instead. The TensorRT plugin
library is built when headers are found: $TENSORRT_INCLUDE_DIR, else /tmp/trt/include.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ptdit_export import kernels

TRT_FALLBACK_INCLUDE = Path("/tmp/trt/include")


@dataclass(frozen=True)
class Build:
    dir: Path
    log: str  # configure + build output, for the warning checks

    @property
    def kernels(self) -> Path:
        return self.dir / "lib" / kernels.LIBRARY_NAME

    @property
    def plugins(self) -> Path:
        return self.dir / "lib" / kernels.PLUGIN_LIBRARY_NAME


def tensorrt_include_dir() -> Path | None:
    env = os.environ.get("TENSORRT_INCLUDE_DIR")
    for candidate in ([Path(env)] if env else []) + [TRT_FALLBACK_INCLUDE]:
        if (candidate / "NvInferRuntime.h").exists():
            return candidate
    return None


def _arch() -> str:
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}{minor}"
    return "80"


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    out = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{out[-6000:]}")
    return out


def _cmake_build(build_dir: Path, targets: list[str], extra: list[str]) -> str:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found")
    configure = [cmake, "-S", str(kernels.REPO_ROOT), "-B", str(build_dir)]
    configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={_arch()}")
    log = _run(configure + extra)
    build = [cmake, "--build", str(build_dir), "-j", str(os.cpu_count() or 2)]
    for target in targets:
        build += ["--target", target]
    return log + _run(build)


@pytest.fixture(scope="session")
def native_build(tmp_path_factory) -> Build:
    """libptdit_kernels.so built from this checkout (skips without nvcc)."""
    if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists():
        pytest.skip("nvcc not found: the CUDA kernels cannot be built here (install the CUDA toolkit)")
    build_dir = tmp_path_factory.mktemp("native")
    return Build(build_dir, _cmake_build(build_dir, ["ptdit_kernels"], []))


@pytest.fixture(scope="session")
def plugins_build(native_build) -> Build:
    """libptdit_plugins.so and the test harness, in the same build tree (skips without headers)."""
    include = tensorrt_include_dir()
    if include is None:
        pytest.skip(
            "TensorRT headers not found: set TENSORRT_INCLUDE_DIR or extract NVIDIA/TensorRT's include/ "
            f"to {TRT_FALLBACK_INCLUDE}"
        )
    log = _cmake_build(
        native_build.dir,
        ["ptdit_plugins", "ptdit_plugin_harness"],
        [f"-DTENSORRT_INCLUDE_DIR={include}", "-DPTDIT_BUILD_TESTS=ON"],
    )
    return Build(native_build.dir, log)


@pytest.fixture(scope="session")
def kernels_lib(request) -> Iterator[Path]:
    """Path of the kernels library the ptdit_export.kernels functions load in this session."""
    env = os.environ.get(kernels.LIBRARY_ENV)
    path = Path(env) if env else request.getfixturevalue("native_build").kernels
    previous = os.environ.get(kernels.LIBRARY_ENV)
    os.environ[kernels.LIBRARY_ENV] = str(path)
    kernels.load_library.cache_clear()
    yield path
    if previous is None:
        os.environ.pop(kernels.LIBRARY_ENV, None)
    else:
        os.environ[kernels.LIBRARY_ENV] = previous
    kernels.load_library.cache_clear()
