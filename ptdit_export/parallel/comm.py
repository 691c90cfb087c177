"""Counted collectives: the only place the parallel code talks to torch.distributed.

`Comm` wraps one process group and counts, per label, the bytes this rank hands to the network
under the usual ring/chain algorithms (what NCCL's bus bandwidth counts):

- all-gather of a P-way sharded tensor with S bytes per rank: (P - 1) * S sent per rank;
- broadcast of S bytes (pipelined chain from the root): S sent by every rank but the last;
- point-to-point send of S bytes: S.

A `Comm` of world size 1 needs no process group: gathers return their input, the neighbour
of rank 0 is itself, and nothing is counted.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


@dataclass
class Comm:
    rank: int = 0
    world: int = 1
    group: object | None = None  # torch.distributed ProcessGroup; None: the default group
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # label -> bytes
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # label -> count

    # ------------------------------------------------------------ creation
    @classmethod
    def from_env(cls, backend: str | None = None) -> Comm:
        """Join the job torchrun (or a test) describes in RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT.

        backend: "nccl" | "gloo"; default NCCL when CUDA is available, else gloo. Each rank uses
        cuda:LOCAL_RANK with NCCL and the CPU with gloo.
        """
        import torch.distributed as dist

        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ValueError(
                f"the parallel run needs {', '.join(missing)} in the environment; launch it with "
                "torchrun --nproc-per-node P ..."
            )
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        device = torch.device("cpu")
        if backend == "nccl":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            kwargs = {"device_id": device} if backend == "nccl" else {}
            dist.init_process_group(backend, **kwargs)
        comm = cls(rank=dist.get_rank(), world=dist.get_world_size(), device=device)
        log.info("rank %d of %d on %s (%s)", comm.rank, comm.world, device, backend)
        return comm

    def close(self) -> None:
        import torch.distributed as dist

        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    # -------------------------------------------------------------- counts
    def reset(self) -> None:
        self.sent.clear()
        self.calls.clear()

    def total(self) -> int:
        return sum(self.sent.values())

    def _count(self, label: str, nbytes: int) -> None:
        self.sent[label] += nbytes
        self.calls[label] += 1

    # --------------------------------------------------------- collectives
    def all_gather(self, x: torch.Tensor, label: str) -> list[torch.Tensor]:
        """Every rank's `x` (same shape on all), in rank order."""
        if self.world == 1:
            return [x]
        import torch.distributed as dist

        x = x.contiguous()
        out = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(out, x, group=self.group)
        self._count(label, (self.world - 1) * _nbytes(x))
        return out

    def broadcast(self, x: torch.Tensor, label: str, src: int = 0) -> torch.Tensor:
        """Rank `src`'s `x` on every rank (others pass a tensor of the same shape and dtype)."""
        if self.world == 1:
            return x
        import torch.distributed as dist

        x = x.contiguous()
        dist.broadcast(x, src, group=self.group)
        if (self.rank - src) % self.world != self.world - 1:
            self._count(label, _nbytes(x))
        return x

    def broadcast_object(self, obj, src: int = 0):
        """A small picklable object from `src` (shapes, flags; not counted)."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src, group=self.group)
        return box[0]

    def shift(self, x: torch.Tensor, step: int, label: str) -> torch.Tensor:
        """Send `x` to rank (rank + step) mod P and return what rank (rank - step) mod P sent."""
        if self.world == 1:
            return x
        import torch.distributed as dist

        x = x.contiguous()
        recv = torch.empty_like(x)
        dst, src = (self.rank + step) % self.world, (self.rank - step) % self.world
        ops = [dist.P2POp(dist.isend, x, dst, self.group), dist.P2POp(dist.irecv, recv, src, self.group)]
        for req in dist.batch_isend_irecv(ops):
            req.wait()
        self._count(label, _nbytes(x))
        return recv

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)


def _nbytes(x: torch.Tensor) -> int:
    return x.numel() * x.element_size()
