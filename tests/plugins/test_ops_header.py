"""CMake turns ops.json into the C++ header the plugins include: same names, versions, fields."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ptdit_export import kernels
from ptdit_export.ops import SPEC_PATH

# Prints the generated tables back as JSON, reading only what the header defines.
DUMP = r"""
#include "ptdit_ops.h"
#include <cstdio>
using namespace ptdit::ops;
static char const* dtype(DType t) {
    switch (t) { case DType::kFloat32: return "float32"; case DType::kFloat16: return "float16";
                 case DType::kBFloat16: return "bfloat16"; case DType::kInt32: return "int32"; }
    return "?";
}
static char const* attr(AttrType t) {
    switch (t) { case AttrType::kInt: return "int"; case AttrType::kInts: return "ints";
                 case AttrType::kFloat: return "float"; }
    return "?";
}
int main() {
    std::printf("{\"domain\": \"%s\", \"plugin_namespace\": \"%s\", \"ops\": [", kDomain, kPluginNamespace);
    for (int i = 0; i < kNumOps; ++i) {
        OpSpec const& op = kOps[i];
        std::printf("%s{\"name\": \"%s\", \"version\": \"%s\", \"inputs\": [",
                    i ? ", " : "", op.name, op.version);
        for (int j = 0; j < op.numInputs; ++j) {
            std::printf("%s{\"name\": \"%s\", \"dtypes\": [", j ? ", " : "", op.inputs[j].name);
            for (int k = 0; k < op.inputs[j].numDtypes; ++k)
                std::printf("%s\"%s\"", k ? ", " : "", dtype(op.inputs[j].dtypes[k]));
            std::printf("]}");
        }
        std::printf("], \"attributes\": [");
        for (int j = 0; j < op.numAttributes; ++j)
            std::printf("%s{\"name\": \"%s\", \"type\": \"%s\", \"count\": %d}", j ? ", " : "",
                        op.attributes[j].name, attr(op.attributes[j].type), op.attributes[j].count);
        std::printf("]}");
    }
    std::printf("]}\n");
    // the named constants the plugins use must agree with the tables
    static_assert(PTDiTShiftedWindowAttention::kInput_grid == 3);
    return 0;
}
"""


@pytest.fixture(scope="module")
def generated_header(tmp_path_factory):
    cmake, cxx = shutil.which("cmake"), shutil.which("g++") or shutil.which("c++")
    if cmake is None or cxx is None:
        pytest.skip("cmake and a C++ compiler are needed to generate and read the header")
    build = tmp_path_factory.mktemp("ops_header")
    subprocess.run([cmake, "-S", str(kernels.REPO_ROOT), "-B", str(build)], check=True, capture_output=True)
    header = build / "generated" / "ptdit_ops.h"
    assert header.exists()
    (build / "dump.cpp").write_text(DUMP)
    exe = build / "dump"
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{header.parent}"]
    subprocess.run([cxx, *flags, str(build / "dump.cpp"), "-o", str(exe)], check=True)
    return json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)


def test_generated_header_matches_ops_json(generated_header):
    spec = json.loads(SPEC_PATH.read_text())
    expected = {
        "domain": spec["domain"],
        "plugin_namespace": spec["plugin_namespace"],
        "ops": [
            {
                "name": op["name"],
                "version": op["version"],
                "inputs": [{"name": i["name"], "dtypes": i["dtypes"]} for i in op["inputs"]],
                "attributes": [
                    {"name": a["name"], "type": a["type"], "count": a.get("count", 1)}
                    for a in op["attributes"]
                ],
            }
            for op in spec["ops"]
        ],
    }
    assert generated_header == expected
