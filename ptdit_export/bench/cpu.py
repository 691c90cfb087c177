"""The CPU side of the efficiency sweep: exported graphs, one fresh process per (model, backend).

`CpuRunner(settings)(base, point)` exports the point's static portable fp32 graphs (in a child
process, cached by config and shape), starts one worker process per planned (model, backend),
makes them take turns (`sweep.interleave`) and reads each worker's VmHWM at the end.
Workers: ONNX Runtime CPU sessions (no memory arena, so a step's activations go back to the system
between turns) or PyTorch eager with the "sdpa" attention backend, at settings.threads threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ptdit_export.bench.sweep import (
    BenchSettings,
    Config,
    SweepPoint,
    bench_inputs,
    build_model,
    interleave,
    point_configs,
    point_row,
    predicted_peak_bytes,
    skip_reason,
    summarise,
)
from ptdit_export.model.config import PTDiTConfig

log = logging.getLogger(__name__)


class CpuRunner:
    """One point on the CPU: exports, fresh worker per (model, backend), interleaved timing."""

    def __init__(self, settings: BenchSettings, cache_dir: str | Path | None):
        self.settings = settings
        self._tmp = None if cache_dir else tempfile.TemporaryDirectory(prefix="ptdit-bench-")
        self.cache = Path(cache_dir or self._tmp.name)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.idle_kb = _idle_worker_kb()

    def __call__(self, base: PTDiTConfig, point: SweepPoint) -> dict[str, Any]:
        s = self.settings
        cfgs = point_configs(base, point)
        row = point_row(point, cfgs, s)
        plan = []
        for backend in s.backends:
            for key, cfg in cfgs.items():
                entry = {"predicted_peak_mb": predicted_peak_bytes(cfg, point, backend, s) / 2**20}
                reason = skip_reason(cfg, point, backend, s)
                if reason:
                    entry["skipped"] = reason
                    log.info("  skip %s / %s: %s", key, backend, reason)
                else:
                    plan.append((key, backend))
                row["runs"][backend][key] = entry
        paths = self._export({k: cfgs[k] for k, b in plan if b == "onnxruntime"}, point)
        workers = [_Worker(cfgs[k], b, paths.get(k), point, s) for k, b in plan]
        try:
            for w in workers:
                w.wait_loaded()
            times = interleave(workers, s.warmup, s.repeats, lambda w: w.step())
            for (key, backend), w, t in zip(plan, workers, times):
                entry = row["runs"][backend][key]
                entry |= summarise(t)
                entry["loaded_mb"] = (w.loaded_kb - self.idle_kb) / 1024
                entry["peak_mb"] = (w.peak_kb() - self.idle_kb) / 1024
                log.info("  %-18s %-11s %9.1f ms  peak %7.0f MB", key, backend, entry["ms"], entry["peak_mb"])
            by_key = dict(zip(plan, workers))
            for key in cfgs:
                if (key, "eager") in by_key and (key, "onnxruntime") in by_key:
                    a, b = by_key[(key, "onnxruntime")].output(), by_key[(key, "eager")].output()
                    row["parity"][key] = float(abs(a - b).max() / max(abs(b).max(), 1e-30))
        except RuntimeError as err:  # a worker died (memory?) or failed: note it, go on with the sweep
            log.warning("  %s: %s", point.label, err)
            for key, backend in plan:
                entry = row["runs"][backend][key]
                if "peak_mb" not in entry:
                    entry["skipped"] = f"run failed ({str(err).splitlines()[0]})"
        finally:
            for w in workers:
                w.close()
        return row

    def _export(self, cfgs: dict[str, Config], point: SweepPoint) -> dict[str, Path]:
        """Static portable fp32 graphs at the point's shape, cached by config and shape."""
        s = self.settings
        paths, jobs = {}, []
        for key, cfg in cfgs.items():
            ident = json.dumps(
                [type(cfg).__name__, cfg.to_dict(), point.grid, s.batch, s.text_len, s.seed, s.opset],
                sort_keys=True,
            )
            path = self.cache / f"{key}-{hashlib.sha1(ident.encode()).hexdigest()[:12]}.onnx"
            paths[key] = path
            if not path.exists():
                jobs.append((cfg, str(path)))
        if jobs:
            t0 = time.perf_counter()
            _in_child(_export_graphs, jobs, point.grid, s)
            log.info("  exported %d graph(s) in %.0f s", len(jobs), time.perf_counter() - t0)
        return paths


def _spawn():
    import multiprocessing

    return multiprocessing.get_context("spawn")


def _in_child(fn: Callable, *args: Any) -> Any:
    """Run fn(*args) in a fresh process (so its memory never lands in the parent) and return its result."""
    ctx = _spawn()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child_main, args=(child, fn, args))
    proc.start()
    child.close()
    try:
        ok, value = parent.recv()
    except EOFError as err:
        raise RuntimeError(
            f"{fn.__name__} died in its worker (exit code {proc.exitcode}); out of memory?"
        ) from err
    finally:
        proc.join()
    if not ok:
        raise RuntimeError(f"{fn.__name__} failed in its worker:\n{value}")
    return value


def _child_main(conn, fn: Callable, args: tuple) -> None:
    import traceback

    try:
        conn.send((True, fn(*args)))
    except BaseException:  # noqa: BLE001  (reported to the parent)
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


def _import_libraries() -> None:
    """What every worker imports, so the idle worker's memory is the common baseline."""
    import numpy  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401

    import ptdit_export.export.transformer  # noqa: F401
    import ptdit_export.model  # noqa: F401


def _proc_status_kb(field: str) -> int | None:
    """A kB figure of /proc/self/status (VmHWM, VmRSS); None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def vm_hwm_kb() -> int:
    """This process's resident-set high-water mark in kB (VmHWM; ru_maxrss off Linux)."""
    kb = _proc_status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb


def vm_rss_kb() -> int:
    kb = _proc_status_kb("VmRSS")
    return vm_hwm_kb() if kb is None else kb


def _idle_kb() -> int:
    _import_libraries()
    return vm_hwm_kb()


def _idle_worker_kb() -> int:
    """VmHWM of a worker that only imported the libraries (the baseline subtracted from peaks)."""
    return _in_child(_idle_kb)


def _export_graphs(jobs: list[tuple[Config, str]], grid: tuple[int, int, int], s: BenchSettings) -> None:
    """Export each config (random weights from s.seed) as a static portable fp32 graph."""
    import torch

    from ptdit_export.export import transformer

    torch.set_num_threads(s.threads)
    f, hh, ww = grid
    settings = transformer.ExportSettings(
        precision="fp32", graph="portable", opset=s.opset, dynamic=False, batch=s.batch,
        latent_height=hh, latent_width=ww, frames=f, text_len=s.text_len,
    )  # fmt: skip
    with _quiet(Path(jobs[0][1]).parent / "export.log"):
        for cfg, path in jobs:
            _export_one(transformer, cfg, path, settings, s.seed)


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send the exporter's console chatter (prints from C and Python alike) to log_path."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _export_one(transformer, cfg: Config, path: str, settings, seed: int) -> None:
    import onnx

    model = build_model(cfg, seed)
    # the project's exporter (`onnx_from_model` takes PT-DiTs only: the dense baselines have no
    # windows to check), with the same settings it would use for a static portable graph
    program = transformer.export_program(transformer.graph_model(model, "fp32"), settings)
    proto = program.model_proto
    proto.ir_version = transformer.IR_VERSION
    tmp = Path(path + ".partial")
    onnx.save_model(proto, str(tmp))
    tmp.rename(path)


class _Worker:
    """A fresh process holding one model on one backend; runs a step when asked."""

    def __init__(
        self, cfg: Config, backend: str, onnx_path: Path | None, point: SweepPoint, s: BenchSettings
    ):
        ctx = _spawn()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, cfg, backend, onnx_path, point, s))
        self.proc.start()
        child.close()
        self.name = f"{type(cfg).__name__}/{backend}"
        self.loaded_kb = 0

    def _ask(self, message: str) -> Any:
        self.conn.send(message)
        try:
            ok, value = self.conn.recv()
        except EOFError as err:
            self.proc.join()
            raise RuntimeError(
                f"worker {self.name} died (exit code {self.proc.exitcode}); if it ran out of memory, "
                "lower --max-memory-gb so the size is skipped"
            ) from err
        if not ok:
            raise RuntimeError(f"worker {self.name} failed:\n{value}")
        return value

    def wait_loaded(self) -> None:
        self.loaded_kb = self._ask("ready")

    def step(self) -> float:
        return self._ask("step")

    def output(self):
        return self._ask("output")

    def peak_kb(self) -> int:
        return self._ask("peak")

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send("stop")
            except OSError:
                pass
            self.proc.join(timeout=30)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join()
        self.conn.close()


def _worker_main(conn, cfg: Config, backend: str, onnx_path, point: SweepPoint, s: BenchSettings) -> None:
    import traceback

    try:
        _import_libraries()
        step, output = _load_runner(cfg, backend, onnx_path, point, s)
    except BaseException:  # noqa: BLE001  (reported to the parent at its first question)
        failure = traceback.format_exc()
        step = output = None
    last = None
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message == "stop":
            break
        if step is None:
            conn.send((False, failure))
            continue
        try:
            if message == "ready":
                conn.send((True, vm_rss_kb()))
            elif message == "step":
                t0 = time.perf_counter()
                last = step()
                conn.send((True, time.perf_counter() - t0))
            elif message == "output":
                conn.send((True, last if last is not None else output()))
            elif message == "peak":
                conn.send((True, vm_hwm_kb()))
        except BaseException:  # noqa: BLE001
            conn.send((False, traceback.format_exc()))
    conn.close()


def _load_runner(cfg: Config, backend: str, onnx_path, point: SweepPoint, s: BenchSettings):
    """(step, output) callables for one model on one backend; step returns the output as NumPy."""
    import torch

    torch.set_num_threads(s.threads)
    feeds = bench_inputs(cfg, point, s.batch, s.text_len, s.seed)
    if backend == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = s.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no arena: a step's activations go back to the system, so the workers of a point,
        # alive together, only ever hold one step's peak at a time
        opts.enable_cpu_mem_arena = False
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

        def step():
            return session.run(None, feeds)[0]

        return step, step

    from ptdit_export.model.attention import use_backend

    model = build_model(cfg, s.seed)
    args = [torch.from_numpy(feeds[k]) for k in feeds]

    def step_eager():
        with torch.inference_mode(), use_backend("sdpa"):
            return model(*args).numpy()

    return step_eager, step_eager
