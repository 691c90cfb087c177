#!/usr/bin/env bash
# Every GPU check of ptdit-export in one run, at most 8 minutes on one H100/H200:
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# Writes OUT_DIR/summary.json and OUT_DIR/summary.md (plus stages/<stage>.log for each stage).
# Needs a CUDA build of PyTorch, nvcc and CMake (pytest for the plugin tests); no network,
# no TensorRT, no onnxruntime-gpu. Without a GPU every stage says "skipped: no GPU", exit 0.
# Each stage runs under its own timeout; a failed or timed-out stage is recorded and the
# others still run. Exit status: 1 when a stage failed or timed out, else 0.
#
# Stage budgets (seconds; 430 of the 480 allowed, plus up to 5 s per stage to kill a hung one,
# start-up and the summary):
#   build 150 | plugin_tests 80 | kernel_bench 70 | model 130
set -u
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$OUT/stages"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/runtime${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
HELPER=benchmarks/gpu_check.py

GPU=$($PY $HELPER detect "$OUT" 2>"$OUT/stages/detect.log" | tail -n 1)

# stage NAME BUDGET COMMAND...: run COMMAND under a timeout, log it, record the outcome
stage() {
    local name=$1 budget=$2 start rc
    shift 2
    if [ "$GPU" != "yes" ]; then
        $PY $HELPER skip "$OUT" "$name" "no GPU"
        return
    fi
    echo "== $name (budget ${budget} s)"
    start=$(date +%s)
    timeout --kill-after=5 "$budget" "$@" >"$OUT/stages/$name.log" 2>&1
    rc=$?
    $PY $HELPER record "$OUT" "$name" "$rc" "$(($(date +%s) - start))" "$budget"
}

stage build 150 $PY $HELPER build "$OUT"
stage plugin_tests 80 $PY $HELPER plugin_tests "$OUT"
stage kernel_bench 70 $PY $HELPER kernel_bench "$OUT"
stage model 130 $PY $HELPER model "$OUT"
$PY $HELPER summary "$OUT"
