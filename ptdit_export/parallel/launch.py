"""Run a function on P local processes (gloo on 127.0.0.1), for tests and benchmarks.

`spawn(fn, world, args, timeout)` starts P spawned processes with RANK / WORLD_SIZE /
MASTER_ADDR=127.0.0.1 / MASTER_PORT=<a free port> set, calls fn(rank, *args) in each, and
returns the P return values in rank order. A process still running after `timeout` seconds
is killed by its pid and the call raises TimeoutError; a failing rank raises RuntimeError with
its traceback. torchrun is the launcher for real runs; this is the bounded in-process twin.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback
from collections.abc import Callable, Sequence
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn, rank, world, port, threads, args, queue) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
    )
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        queue.put((rank, True, fn(rank, *args)))
    except BaseException:  # noqa: BLE001 - reported to the parent with the traceback
        queue.put((rank, False, traceback.format_exc()))
    finally:
        try:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass


def spawn(
    fn: Callable[..., Any], world: int, args: Sequence[Any] = (), timeout: float = 120.0, threads: int = 1
) -> list[Any]:
    """fn(rank, *args) on `world` fresh processes; their results in rank order.

    fn must be importable (a module-level function); results must pickle. `threads` sets
    torch's intra-op threads in each process (0: leave torch's default)."""
    import queue as queue_mod
    import time

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_entry, args=(fn, r, world, port, threads, tuple(args), results), daemon=True)
        for r in range(world)
    ]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(out) < world:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{world} processes did not finish within {timeout:.0f} s")
            try:
                rank, ok, value = results.get(timeout=min(left, 1.0))
            except queue_mod.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(
                        f"rank process {dead[0].pid} died with exit code {dead[0].exitcode}"
                    ) from None
                continue
            if not ok:
                raise RuntimeError(f"rank {rank} failed:\n{value}")
            out[rank] = value
        for p in procs:
            p.join(max(deadline - time.monotonic(), 1.0))
    finally:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, 9)
                p.join(5)
        results.close()
    return [out[r] for r in range(world)]
