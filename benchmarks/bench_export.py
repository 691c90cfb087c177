"""Time and peak memory of whole export/build commands, against a baseline from the same run.

Each case runs a real `ptdit-export` command in a fresh process (imports included, as a user
runs it) and reads its wall time and peak resident memory (the child's ru_maxrss); the per-stage
times come from the command's own progress lines (`[n] stage` ... `stage: 12.3 s`). The baseline
is the same command with every block traced (PTDIT_EXPORT_TRACE=full, the exporter before
one-block tracing); the cases are one-block tracing with the trace cache off ("one-block", a
first export) and with a primed cache ("cached", a second checkpoint of the same model), all
interleaved so machine noise hits them alike. Load average before and
after, with a warning above the thread count.

    python benchmarks/bench_export.py                      # tiny export, demo build
    python benchmarks/bench_export.py --case 1.1b --no-baseline   # the released 1.1B, fp16
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date

CASES = {
    # name: (command after `ptdit-export`, goal in seconds, goal in GB or None)
    "tiny": (["export", "--model", "tiny"], 5.0, None),
    "small": (["export", "--model", "small", "--precision", "fp16", "--no-verify"], None, None),
    "demo": (["build", "--force"], 15.0, None),
    "1.1b": (
        ["export", "--model", "qihoo-t2x-1.1b", "--precision", "fp16"],
        300.0,
        8.0,
    ),
}
STAGE = re.compile(r"^\s+(.+): ([0-9.]+) s$")


def run_once(argv: list[str], out: str, threads: int) -> dict:
    """One command in a child process: wall seconds, its own peak RSS (GB, from wait4), stage
    times from its progress lines."""
    exe = shutil.which("ptdit-export") or sys.exit("ptdit-export is not on PATH: pip install -e .")
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile("w+") as log:
        t = time.perf_counter()
        proc = subprocess.Popen([exe, *argv, "--out", out], stdout=log, stderr=log, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    if proc.returncode:
        sys.exit(f"Error: `ptdit-export {' '.join(argv)}` failed:\n{text[-2000:]}")
    stages: dict[str, float] = {}
    for line in text.splitlines():
        m = STAGE.match(line.split(": ", 1)[-1] if line.startswith("INFO") else line)
        if m:
            stages[m[1]] = stages.get(m[1], 0.0) + float(m[2])
    return {"wall": wall, "rss_gb": usage.ru_maxrss / 2**20, "stages": stages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=list(CASES), help="repeatable [tiny, demo]")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--baseline", action=argparse.BooleanOptionalAction, default=True, help="also run --trace full"
    )
    args = ap.parse_args()

    from ptdit_export.bench.load import load_report

    print(load_report("before", args.threads), flush=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {date.today()}")
    cache = tempfile.mkdtemp(prefix="trace-cache-")
    for case in args.case or ["tiny", "demo"]:
        argv, goal_s, goal_gb = CASES[case]
        modes = {  # name: (environment, extra arguments)
            "full": ({"PTDIT_EXPORT_TRACE": "full", "PTDIT_EXPORT_TRACE_CACHE": "0"}, []),
            "one-block": ({"PTDIT_EXPORT_TRACE_CACHE": "0"}, []),
            "cached": ({"PTDIT_EXPORT_CACHE_DIR": cache}, []),
        }
        if not args.baseline:
            del modes["full"]
        runs: dict[str, list[dict]] = {m: [] for m in modes}
        with tempfile.TemporaryDirectory() as tmp:  # prime the cache (not timed)
            os.environ.update(modes["cached"][0])
            run_once(argv, f"{tmp}/out", args.threads)
            os.environ.pop("PTDIT_EXPORT_CACHE_DIR")
        for _ in range(args.repeats):
            for mode, (env, extra) in modes.items():
                saved = dict(os.environ)
                os.environ.update(env)
                with tempfile.TemporaryDirectory() as tmp:
                    runs[mode].append(run_once(argv + extra, f"{tmp}/out", args.threads))
                os.environ.clear()
                os.environ.update(saved)
        print(f"\n== {case}: ptdit-export {' '.join(argv)}")
        best = {m: min(r, key=lambda x: x["wall"]) for m, r in runs.items() if r}
        for mode, r in best.items():
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
            print(
                f"  {mode:<10} wall {r['wall']:7.1f} s (best of {len(runs[mode])})  peak RSS {r['rss_gb']:.2f} GB"
            )
            print(f"             stages (s): {stages}")
        for mode in ("one-block", "cached"):
            if "full" in best:
                print(f"  {mode} is {best['full']['wall'] / best[mode]['wall']:.2f}x faster than full")
        if goal_s:
            for mode in ("one-block", "cached"):
                r = best[mode]
                ok = r["wall"] <= goal_s and (goal_gb is None or r["rss_gb"] <= goal_gb)
                gb = f", <= {goal_gb:.0f} GB" if goal_gb else ""
                print(f"  goal <= {goal_s:.0f} s{gb}, {mode}: {'met' if ok else 'NOT met'}")
    shutil.rmtree(cache, ignore_errors=True)
    print(load_report("after", args.threads))


if __name__ == "__main__":
    main()
