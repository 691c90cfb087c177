"""Multi-GPU (or multi-process CPU) PT-DiT inference by window sharding; see docs/parallel.md.

comm = Comm.from_env()                      # inside a torchrun job: NCCL on GPUs, gloo on CPUs
sharded = ShardedPTDiT(PTDiT.from_pretrained(path), comm)
out = sharded(latents, timestep, text, mask)  # same result as the single-process model
"""

from ptdit_export.parallel.comm import Comm
from ptdit_export.parallel.model import ShardedPTDiT
from ptdit_export.parallel.sharding import ShardingError, SlabPlan, valid_parts

__all__ = ["Comm", "ShardedPTDiT", "ShardingError", "SlabPlan", "valid_parts"]
