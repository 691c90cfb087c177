"""A Linear that computes in its weight dtype and answers in its input dtype.

With the whole model in one dtype (the release's way) the casts are no-ops. When the
exporter keeps LayerNorms, modulation, gates and the residual stream in fp32 and the
projections in fp16/bf16, this is where the precision changes hands.
"""

from __future__ import annotations

import torch
from torch import nn


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype)).to(x.dtype)
