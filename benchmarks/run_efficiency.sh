#!/usr/bin/env bash
# Efficiency sweep from scratch: PT-DiT vs dense baselines, 256..16,384 tokens, ONNX Runtime and
# PyTorch eager on the CPU. Rewrites docs/benchmarks_efficiency.json, docs/efficiency_latency.png,
# docs/efficiency_memory.png and the generated section of docs/benchmarks_efficiency.md.
# About 25 minutes on 2 shared cores. Extra arguments go to the command, e.g. --repeats 3,
# or --from-json docs/benchmarks_efficiency.json to redraw without measuring.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m ptdit_export.cli.bench_cmd --out docs --doc docs/benchmarks_efficiency.md "$@"
