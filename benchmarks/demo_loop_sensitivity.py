"""How much the trained demo's sampler amplifies small per-step differences, and the engines'.

    python benchmarks/demo_loop_sensitivity.py --engines engines/demo-fp32 engines/demo

Draws the 45 held-out prompts x 2 seeds (30 steps, guidance 4) with the PyTorch pipeline, then
again with each step's transformer output perturbed by EPS of its largest value (seeded noise),
with the transformer run in fp16, and through each built engine folder; prints each set's
mean absolute / relative max error against the fp32 pictures, the pixels off by more than
0.05 and the pictures judged the same, with the load average before and after. These PyTorch rows are where the `loop-pictures`
bounds in ptdit_export/tolerances.py come from (docs/demo.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ptdit_export import demo
from ptdit_export.bench.load import load_report


class Perturbed(torch.nn.Module):
    """The transformer with seeded noise of `eps` x max|output| added to every output."""

    def __init__(self, model: torch.nn.Module, eps: float):
        super().__init__()
        self.model, self.eps, self.config = model, eps, model.config
        self.g = torch.Generator().manual_seed(1)

    def forward(self, x, t, text, mask):
        out = self.model(x, t, text, mask)
        return out + self.eps * out.abs().max() * torch.randn(out.shape, generator=self.g)


class Half(torch.nn.Module):
    """The transformer run in fp16 (inputs cast down, outputs back to fp32)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.config = model.half(), model.config

    def forward(self, x, t, text, mask):
        return self.model(x.half(), t.half(), text.half(), mask).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", type=Path, nargs="*", default=[], help="built demo folders to compare too")
    p.add_argument("--eps", type=float, nargs="*", default=[1e-6, 1e-5])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(load_report("before", args.threads))
    scenes = demo.held_out_scenes()

    def pytorch(wrap=None) -> np.ndarray:
        comps = demo.load_components()
        if wrap is not None:
            comps.transformer = wrap(comps.transformer)
        with torch.no_grad():
            return demo.check_adherence(comps.generate, scenes, (0, 1), 30, 4.0)[1]

    reference = pytorch()
    runs = [
        (f"PyTorch fp32, outputs perturbed by {eps:g}", lambda eps=eps: pytorch(lambda m: Perturbed(m, eps)))
        for eps in args.eps
    ]
    runs.append(("PyTorch, transformer in fp16", lambda: pytorch(Half)))
    for folder in args.engines:
        runs.append(
            (
                f"engine {folder}",
                lambda f=folder: demo.check_adherence(
                    demo.runtime_drawer(f, args.threads), scenes, (0, 1), 30, 4.0
                )[1],
            )
        )
    print("| pictures vs PyTorch fp32 | mean abs | relative max | pixels off > 0.05 | judged the same |")
    print("|---|---|---|---|---|")
    for name, draw in runs:
        images = draw()
        d = demo.picture_difference(images, reference)
        print(
            f"| {name} | {d['mean_abs']:.2e} | {d['relative_max']:.2e} | {d['pixels_off']} | "
            f"{d['judged_same']}/{len(images)} |",
            flush=True,
        )
    print(load_report("after", args.threads))


if __name__ == "__main__":
    main()
