"""Serving benchmark: a real tritonserver on loopback against one in-process Pipeline.

    python benchmarks/bench_serving.py --engine-dir DIR [--requests 96] [--clients 1,4,16]
        [--steps 20] [--threads 2] [--max-seconds 900] [--faults] [--json out.json]

1. Baseline: one ptdit_runtime.Pipeline in this process, looping over demo prompts at its best
   batch size (each batch size of the engine's profile tried; the fastest kept), images/s.
2. For dynamic batching on and off: a model repository of one KIND_CPU instance with the same
   ONNX Runtime threads, a tritonserver on free 127.0.0.1 ports, and 1, 4, 16 concurrent
   clients sending demo prompts (HTTP, every call bounded by a timeout): images/s, p50/p95/p99
   latency, failed requests (an error answer) and lost ones (no answer within the timeout).
3. Ratios, measured in the same run: served at 16 clients / in-process (goal >= 0.9), and
   batching on / off at each client count.
4. --faults: under 16-client load, kill the model's backend process once and send malformed
   requests throughout; report what clients saw, how long until answers came back (the
   launcher's `heal` restarts the server), and what the server's metrics counted.

Every stage is bounded: --requests per client count, --max-seconds overall (a stage that runs
out stops sending and reports what it has).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]


def demo_prompts(count: int, seed: int = 0) -> list[str]:
    from ptdit_export.demo import all_scenes

    rnd = random.Random(seed)
    return [s.caption() for s in rnd.choices(all_scenes(), k=count)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ------------------------------------------------------------------ 1. in-process baseline
def in_process(engine_dir: Path, steps: int, threads: int, requests: int, deadline: float) -> dict:
    from ptdit_runtime import Pipeline

    pipe = Pipeline.from_dir(engine_dir, backend="onnxruntime", provider="cpu", threads=threads)
    lim = pipe.folder.limits
    best = {"images_per_s": 0.0}
    sizes = sorted({1, 2, 4, lim.batch.max // 2 if lim.batch else 1})
    prompts = demo_prompts(requests, seed=1)
    pipe(prompts[:1], steps=steps)  # warm-up
    for batch in sizes:
        done, start = 0, time.perf_counter()
        while done < requests and time.perf_counter() < deadline:
            pipe(prompts[done : done + batch], steps=steps, seed=done)
            done += len(prompts[done : done + batch])
        rate = done / (time.perf_counter() - start)
        logging.info("in-process batch %d: %.2f images/s", batch, rate)
        if rate > best["images_per_s"]:
            best = {"batch": batch, "images_per_s": rate, "images": done}
    pipe.close()
    return best


# ------------------------------------------------------------------ 2. served load
def load(url: str, clients: int, requests: int, steps: int, timeout: float, deadline: float) -> dict:
    from ptdit_export.serving import ServingError, generate

    prompts = demo_prompts(min(requests, 512), seed=clients)
    latencies, failed, lost = [], [], []
    lock, counter = threading.Lock(), iter(range(requests))

    def client() -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                generate(url, prompts[i % len(prompts)], seed=i, steps=steps, timeout=timeout)
                latencies.append(time.perf_counter() - t0)
            except ServingError as err:
                (
                    lost if "timed out" in str(err).lower() or "deadline" in str(err).lower() else failed
                ).append(str(err))
                time.sleep(0.5)  # a client backs off after an error

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "answered": len(latencies),
        "images_per_s": len(latencies) / wall,
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "p99_s": percentile(latencies, 99),
        "failed": len(failed),
        "lost": len(lost),
        "errors": sorted(set(failed + lost))[:3],
    }


def serve_and_load(engine_dir, batching, args, deadline, work) -> tuple[list[dict], dict | None]:
    from ptdit_export.serving import TritonServer, triton_repo_from_engine

    repo = Path(work) / ("batching" if batching else "no-batching")
    triton_repo_from_engine(engine_dir, repo, instances=1, threads=args.threads, batching=batching,
                            queue_delay_us=args.queue_delay_us, steps=args.steps, link=True)  # fmt: skip
    rows, faults = [], None
    with TritonServer(repo, log_path=repo / "server.log") as server:
        load(server.http_url, 1, 2, args.steps, args.timeout, deadline)  # warm-up
        for clients in args.clients:
            row = load(server.http_url, clients, args.requests, args.steps, args.timeout, deadline)
            rows.append({"batching": batching, **row})
            logging.info("%s", rows[-1])
        if args.faults and batching:
            faults = fault_run(server, args, deadline)
    return rows, faults


# ------------------------------------------------------------------ 4. faults
def malformed(http_url: str) -> list[str]:
    """Requests Triton or the model must refuse: bad JSON, wrong dtype, a missing prompt, steps 0."""
    bodies = [
        b"{not json",
        json.dumps({"inputs": [{"name": "seed", "shape": [1, 1], "datatype": "FP32", "data": [1.5]}]}).encode(),
        json.dumps({"inputs": [{"name": "seed", "shape": [1, 1], "datatype": "INT64", "data": [3]}]}).encode(),
        json.dumps({"inputs": [{"name": "prompt", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]},
                               {"name": "steps", "shape": [1, 1], "datatype": "INT32", "data": [0]}]}).encode(),
    ]  # fmt: skip
    answers = []
    for body in bodies:
        request = urllib.request.Request(f"http://{http_url}/v2/models/ptdit/infer", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(f"{response.status} (accepted!)")
        except urllib.error.HTTPError as err:
            answers.append(f"{err.code}: {json.loads(err.read() or b'{}').get('error', '')[:80]}")
        except OSError as err:
            answers.append(f"no answer: {err}")
    return answers


def fault_run(server, args, deadline) -> dict:
    def counters() -> dict:
        text = server.metrics()
        wanted = ("nv_inference_request_failure", "nv_inference_request_success", "ptdit_request_failure")
        return {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line.startswith(wanted)
        }

    stop = threading.Event()
    answers: list[list[str]] = []
    heals: list[float] = []

    def chaos() -> None:
        time.sleep(2)
        stub = next(iter(server.stubs()), None)
        killed_at = time.perf_counter()
        if stub:
            os.kill(stub, signal.SIGKILL)
        while not stop.is_set():
            answers.append(malformed(server.http_url))
            if server.heal():  # what `ptdit-export serve` does every second: restart the server
                heals.append(time.perf_counter() - killed_at)
            time.sleep(1)

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    # load for --fault-seconds (the kill comes 2 s in), however many requests that takes
    until = min(deadline, time.perf_counter() + args.fault_seconds)
    result = load(server.http_url, 16, 10**6, args.steps, args.timeout, until)
    stop.set()
    thread.join(60)
    after = counters()
    return {
        "load": result,
        "server_alive": server.process.poll() is None and server.ready("ptdit"),
        "restarted_after_s": heals,
        "malformed_answers": answers[-1] if answers else [],  # the last round: after any restart
        "metrics_at_end": after,  # the counters start again with a restarted server
    }


# ------------------------------------------------------------------ report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine-dir", type=Path, required=True, help="e.g. from `ptdit-export build --precision fp16`"
    )
    parser.add_argument("--requests", type=int, default=96, help="requests per client count")
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=2, help="ONNX Runtime threads (server instance and baseline)"
    )
    parser.add_argument("--queue-delay-us", type=int, default=20000)
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="whole run")
    parser.add_argument("--faults", action="store_true")
    parser.add_argument("--fault-seconds", type=float, default=60.0, help="length of the fault run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ptdit_export.bench.load import load_report

    print(load_report("before", args.threads), flush=True)
    deadline = time.perf_counter() + args.max_seconds

    baseline = in_process(args.engine_dir, args.steps, args.threads, args.requests, deadline)
    rows, faults = [], None
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as work:
        for batching in (True, False):
            got, fault = serve_and_load(args.engine_dir, batching, args, deadline, work)
            rows += got
            faults = faults or fault
    by = {(r["batching"], r["clients"]): r for r in rows}
    top = max(args.clients)
    report = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv),
        "in_process": baseline,
        "served": rows,
        "served_vs_in_process": by[True, top]["images_per_s"] / baseline["images_per_s"]
        if (True, top) in by
        else None,
        "batching_on_vs_off": {
            c: by[True, c]["images_per_s"] / by[False, c]["images_per_s"]
            for c in args.clients
            if (True, c) in by and (False, c) in by and by[False, c]["images_per_s"] > 0
        },
        "faults": faults,
    }
    print(f"in-process Pipeline, best batch {baseline.get('batch')}: {baseline['images_per_s']:.2f} images/s")
    print(
        f"{'batching':>8} {'clients':>7} {'img/s':>7} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'failed':>6} {'lost':>5}"
    )
    for r in rows:
        print(f"{'on' if r['batching'] else 'off':>8} {r['clients']:>7} {r['images_per_s']:7.2f} {r['p50_s']:7.2f} "
              f"{r['p95_s']:7.2f} {r['p99_s']:7.2f} {r['failed']:6d} {r['lost']:5d}")  # fmt: skip
    if report["served_vs_in_process"] is not None:
        print(
            f"served ({top} clients, batching) / in-process: {report['served_vs_in_process']:.2f}x (goal >= 0.9)"
        )
    for c, ratio in report["batching_on_vs_off"].items():
        print(f"batching on / off at {c} clients: {ratio:.2f}x")
    if faults:
        print("faults:", json.dumps(faults, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(load_report("after", args.threads))


if __name__ == "__main__":
    main()
