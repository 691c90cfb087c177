"""Accuracy of int8 / fp8 fake quantization (ptdit_export.quant.fake) against fp32, in PyTorch.

The released width (16 heads x 72, caption 4096; LAYERS layers, random weights) at 256 px, and
the trained demo; inputs from the runtime's sampler states: noise blended with a random "clean"
latent at timesteps spread over the schedule (calibrated on one set, measured on another).

    python benchmarks/quant_error.py --layers 2
"""

from __future__ import annotations

import argparse

import torch


def states(config, steps: int, batch: int, latent: int, text_len: int, seed: int) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    feeds = []
    width = config.caption_channels or config.hidden_size
    clean = torch.randn(batch, config.in_channels, 1, latent, latent, generator=g)
    for t in torch.linspace(999, 20, steps):
        noise = torch.randn(clean.shape, generator=g)
        x = (1 - t / 1000) * clean + (t / 1000) * noise  # rectified flow's interpolation
        text = torch.randn(batch, text_len, width, generator=g)
        mask = torch.ones(batch, text_len, dtype=torch.int64)
        feeds.append((x, torch.full((batch,), float(t)), text, mask))
    return feeds


def measure(model, feeds_cal, feeds_eval) -> dict[str, float]:
    from ptdit_export.quant.fake import fake_quantized

    with torch.no_grad():
        ref = [model(*f) for f in feeds_eval]
    out = {}
    for precision in ("int8", "fp8"):
        with fake_quantized(model, precision, feeds_cal) as n, torch.no_grad():
            got = [model(*f) for f in feeds_eval]
        err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(got, ref))
        mean = max(float((a - b).abs().mean() / b.abs().mean()) for a, b in zip(got, ref))
        out[precision] = (err, mean, n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ptdit_export.bench.load import load_report

    print(load_report("before", args.threads), flush=True)
    from ptdit_export.model import PTDiT
    from ptdit_export.model.presets import PRESETS

    torch.manual_seed(0)
    config = PRESETS["qihoo-t2x-1.1b"].config.replace(num_layers=args.layers)
    model = PTDiT(config).eval()
    for p in model.parameters():  # the release initialises some weights to zero
        if p.abs().max() == 0:
            p.data.normal_(0, 0.02)
    rows = {f"released width, {args.layers} layers, 256 px": (model, 32, 32)}
    from ptdit_export import demo

    rows["demo (trained)"] = (demo.load_components().transformer.eval(), 16, 16)
    for label, (m, latent, text_len) in rows.items():
        cal = states(m.config, 6, 2, latent, text_len, seed=1)
        ev = states(m.config, 6, 2, latent, text_len, seed=2)
        for precision, (err, mean, n) in measure(m, cal, ev).items():
            print(f"{label}: {precision} fake quantization ({n} linears) vs fp32: relative max error {err:.2e}, "
                  f"relative mean error {mean:.2e}")  # fmt: skip
    print(load_report("after", args.threads))


if __name__ == "__main__":
    main()
