"""The native libraries build with CMake as documented, warning-free, with the expected ABI."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.plugins.conftest import Build

C_API = (
    "ptdit_abi_version",
    "ptdit_last_error",
    "ptdit_proxy_pool",
    "ptdit_window_attention",
    "ptdit_shifted_window_attention",
    "ptdit_check_shifted_grid",
    "ptdit_shifted_window_index_map",
    "ptdit_proxy_pool_members",
)


def _dynamic_symbols(lib, *flags: str) -> set[str]:
    out = subprocess.run(["nm", "-D", *flags, str(lib)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def _warnings(build: Build) -> list[str]:
    return [line for line in build.log.splitlines() if re.search(r"\bwarning\b", line, re.IGNORECASE)]


@pytest.mark.slow
def test_kernels_library_builds_without_warnings(native_build):
    assert native_build.kernels.exists()
    assert _warnings(native_build) == []


@pytest.mark.slow
def test_kernels_library_exports_the_c_api_only(native_build):
    exported = _dynamic_symbols(native_build.kernels, "--defined-only")
    assert set(C_API) <= exported
    # hidden visibility: no C++ symbols (and no CUDA runtime) leak out of the library
    assert not [s for s in exported if s.startswith("_Z") or s.startswith("cuda")]


@pytest.mark.slow
def test_plugins_library_builds_against_tensorrt_headers_without_warnings(plugins_build):
    assert plugins_build.plugins.exists()
    assert _warnings(plugins_build) == []


@pytest.mark.slow
def test_plugins_library_registers_through_get_creators_without_libnvinfer(plugins_build):
    exported = _dynamic_symbols(plugins_build.plugins, "--defined-only")
    assert {"getCreators", "setLoggerFinder"} <= exported
    readelf = ["readelf", "-d", str(plugins_build.plugins)]
    needed = subprocess.run(readelf, capture_output=True, text=True, check=True).stdout
    assert "nvinfer" not in needed
    undefined = _dynamic_symbols(plugins_build.plugins, "--undefined-only")
    # REGISTER_TENSORRT_PLUGIN would leave getPluginRegistry (a libnvinfer symbol) undefined
    assert not [s for s in undefined if "PluginRegistry" in s or "nvinfer" in s]


@pytest.mark.slow
def test_plugins_library_exports_only_the_tensorrt_entry_points(plugins_build):
    # the kernel C API linked into it stays local: a libptdit_kernels.so loaded into the same
    # process can neither interpose it nor be interposed by it
    assert _dynamic_symbols(plugins_build.plugins, "--defined-only") == {"getCreators", "setLoggerFinder"}
    dynamic = subprocess.run(["readelf", "-d", str(plugins_build.plugins)], capture_output=True, text=True).stdout
    assert "SYMBOLIC" in dynamic  # -Bsymbolic: DT_SYMBOLIC / FLAGS SYMBOLIC
