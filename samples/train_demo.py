"""Train the demo PT-DiT (32 px shapes, text-to-image) on CPU and write presets/demo/.

    python samples/train_demo.py --steps 300 --out /tmp/demo-try --no-figures   # a quick try

The shipped weights are three runs, each starting from the one before (--init-from); the
commands are in docs/demo.md ("Reproduce"), the settings of all three in training.json.

Objective: the release's rectified flow. x_t = (1 - t) x0 + t noise with t in [0, 1], the
model sees timestep 1000 t and its first half of output channels is trained toward
v = x0 - noise, so the release's sampler (t from 1000 down to 0, x <- x + v (t_i - t_{i+1}) / 1000)
walks from noise to pictures unchanged. The T5 encoder is trained jointly; 10% of the
captions are empty so classifier-free guidance works. --fg-weight weighs the error on the
shape's pixels up (1 + w there, 1 on the background): the shape covers 4-11% of a picture, and
without it small shapes come out diluted toward the background and over-saturated by guidance.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ptdit_export import demo

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--ema", type=float, default=0.995, help="EMA decay of the saved weights (0: none)")
    p.add_argument("--p-empty", type=float, default=0.1, help="share of empty captions (for CFG)")
    p.add_argument("--t-dist", choices=("uniform", "logit-normal"), default="uniform")
    p.add_argument(
        "--t-shift",
        type=float,
        default=3.0,
        help="move training times toward noise: t' = s t / (1 + (s - 1) t) (1: no shift)",
    )
    p.add_argument(
        "--caption-init",
        choices=("small", "default"),
        default="default",
        help="caption projection: N(0, 0.02) (PixArt) or the Linear default",
    )
    p.add_argument(
        "--init",
        choices=("pixart", "release"),
        default="pixart",
        help="pixart: xavier linears, zero output layers; release: the module defaults",
    )
    p.add_argument(
        "--fg-weight",
        type=float,
        default=0.0,
        help="extra loss weight on the shape's pixels (small shapes are a few %% of the picture)",
    )
    p.add_argument("--init-from", type=Path, help="start from the weights of a demo folder (fine-tuning)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=demo.DEMO_DIR)
    p.add_argument(
        "--eval-every", type=int, default=1000, help="quick adherence check every N steps (0: off)"
    )
    p.add_argument("--eval-seeds", type=int, default=2, help="noise seeds per held-out prompt")
    p.add_argument("--eval-steps", type=int, default=30)
    p.add_argument("--docs", type=Path, default=ROOT / "docs", help="where the loss curve goes")
    p.add_argument("--no-figures", action="store_true", help="skip docs/demo_loss.png")
    args = p.parse_args()
    if args.fg_weight < 0:
        raise SystemExit(f"Error: --fg-weight must be >= 0 (0: plain mean); got {args.fg_weight:g}")
    if args.init_from and not (args.init_from / "model.safetensors").is_file():
        raise SystemExit(
            f"Error: --init-from {args.init_from} holds no demo weights (model.safetensors): pass a "
            "folder this script wrote, e.g. ptdit_export/presets/demo"
        )
    return args


def t_sample(batch: int, g: torch.Generator, kind: str, shift: float) -> torch.Tensor:
    """Flow times in (0, 1): uniform or logit-normal, then shifted toward noise by `shift`
    (the form of the release's sampling-time transform)."""
    t = (
        torch.rand(batch, generator=g)
        if kind == "uniform"
        else torch.sigmoid(torch.randn(batch, generator=g))
    )
    return shift * t / (1 + (shift - 1) * t)


def loss_weight(images: np.ndarray, vae: torch.nn.Module, fg_weight: float) -> torch.Tensor | None:
    """Per-latent loss weight 1 + fg_weight on the shape's pixels, in the latents' layout:
    pictures [B, 3, H, W] whose corner pixel is the background -> [B, 3*s*s, 1, H/s, W/s]."""
    if not fg_weight:
        return None
    shape = np.abs(images - images[:, :, :1, :1]).max(axis=1, keepdims=True) > 1e-6  # (B, 1, H, W)
    mask = torch.from_numpy(np.repeat(shape, 3, axis=1).astype(np.float32))[:, :, None]
    return 1 + fg_weight * (vae.encode(mask) + 1) / 2  # encode is 2x - 1 then a reshape


def init_for_training(model: torch.nn.Module, small_caption: bool = True) -> None:
    """PixArt-style start: xavier-uniform linears and patch embedding, N(0, 0.02) timestep and
    caption embedders, zero text-attention outputs and final projection. The proxy and
    shifted-window output layers (linear_1_visual, linear_2) keep their released zero init."""
    released_zero = {
        id(getattr(b, n)) for b in model.transformer_blocks for n in ("linear_1_visual", "linear_2")
    }
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and id(module) not in released_zero:
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
        w = model.pos_embed.proj.weight
        torch.nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        embedders = [
            model.adaln_single.emb.timestep_embedder.linear_1,
            model.adaln_single.emb.timestep_embedder.linear_2,
            model.adaln_single.linear,
        ]
        if small_caption:
            embedders += [model.caption_projection.linear_1, model.caption_projection.linear_2]
        for layer in embedders:
            torch.nn.init.normal_(layer.weight, std=0.02)
        zero = [model.proj_out] + [block.attn2.to_out[0] for block in model.transformer_blocks]
        for layer in zero:
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)


def quick_check(comps: demo.DemoComponents, nets: torch.nn.Module, ema: dict | None) -> dict[str, float]:
    """Held-out adherence (24 prompts, 12 steps) of the EMA weights, without disturbing training."""
    live = {k: v.detach().clone() for k, v in nets.state_dict().items()}
    if ema is not None:
        nets.load_state_dict(ema)
    nets.eval()
    with torch.no_grad():
        rates, _ = demo.check_adherence(
            comps.generate, demo.held_out_scenes()[::2][:24], seeds=(0,), steps=12
        )
    nets.load_state_dict(live)
    nets.train()
    return {k: round(v, 3) for k, v in rates.items()}


def train(args: argparse.Namespace) -> tuple[demo.DemoComponents, list[float], dict]:
    from tqdm import tqdm

    if args.init_from:
        comps = demo.load_components(args.init_from)
    else:
        comps = demo.make_components(args.seed)
        if args.init == "pixart":
            init_for_training(comps.transformer, small_caption=args.caption_init == "small")
    nets = torch.nn.ModuleDict({"transformer": comps.transformer, "text_encoder": comps.text_encoder})
    nets.train()
    ema = {k: v.detach().clone() for k, v in nets.state_dict().items()}
    opt = torch.optim.AdamW(nets.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))

    def lr_at(step: int) -> float:  # warm-up, then cosine to 10%
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        done = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))

    rng = np.random.default_rng(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    channels = comps.transformer.config.in_channels
    vae = demo.space_to_depth(comps.spatial_compression)
    losses: list[float] = []
    progress: list[dict] = []
    wall, cpu = time.perf_counter(), time.process_time()
    bar = tqdm(range(args.steps), desc="train demo", unit="step")
    for step in bar:
        images, captions = demo.make_batch(rng, args.batch, p_empty=args.p_empty)
        x0 = vae.encode(torch.from_numpy(images)[:, :, None])  # (B, 12, 1, 16, 16)
        weight = loss_weight(images, vae, args.fg_weight)  # (B, 12, 1, 16, 16) or None
        noise = torch.randn(x0.shape, generator=g)
        t = t_sample(args.batch, g, args.t_dist, args.t_shift)
        tt = t[:, None, None, None, None]
        xt = (1 - tt) * x0 + tt * noise
        text, mask = comps.encode(captions)
        out = comps.transformer(xt, t * 1000, text, mask)
        err = (out[:, :channels] - (x0 - noise)) ** 2
        loss = err.mean() if weight is None else (weight * err).sum() / weight.sum()
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(nets.parameters(), 1.0)
        opt.step()
        if args.ema:
            decay = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in nets.state_dict().items():
                    ema[k].lerp_(v, 1 - decay) if v.is_floating_point() else ema[k].copy_(v)
        losses.append(loss.item())
        if args.eval_every and (step + 1) % args.eval_every == 0:
            progress.append({"step": step + 1, **quick_check(comps, nets, ema if args.ema else None)})
            bar.write(f"step {step + 1}: {progress[-1]}")
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{lr_at(step):.1e}")
    stats = {
        "adherence_during_training": progress,
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }
    if args.ema:
        nets.load_state_dict(ema)
    nets.eval()
    return comps, losses, stats


def plot_loss(losses: list[float], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            'the loss curve needs matplotlib: pip install -e ".[bench]" (or pass --no-figures)'
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(losses) + 1)
    window = max(1, len(losses) // 100)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, losses, alpha=0.25, lw=0.6, label="batch loss")
    ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("velocity MSE")
    ax.set_title("demo PT-DiT, rectified flow")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    try:
        run(args)
    except KeyboardInterrupt:  # save_components swaps the folder in whole, so nothing was written
        raise SystemExit(f"Error: interrupted; {args.out} is as it was: run the script again") from None


def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    base = args.init_from / "training.json" if args.init_from else None
    started_from = json.loads(base.read_text()) if base and base.is_file() else None
    comps, losses, stats = train(args)
    with torch.no_grad():
        rates, _ = demo.check_adherence(
            comps.generate, seeds=tuple(range(args.eval_seeds)), steps=args.eval_steps, guidance=4.0
        )
    notes = {
        "settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k not in ("out", "docs", "no_figures")
        },
        "threads": args.threads,
        **stats,
        "final_loss_mean_of_last_100": round(float(np.mean(losses[-100:])), 5),
        "held_out_adherence": {k: round(v, 4) for k, v in rates.items()},
        "adherence_setting": {"seeds": args.eval_seeds, "steps": args.eval_steps, "guidance": 4.0},
    }
    if started_from is not None:  # fine-tuned: keep the earlier stage's record
        notes["started_from"] = started_from
    demo.save_components(comps, args.out, notes)
    logging.info("%s", json.dumps(notes, indent=2))
    if not args.no_figures:
        args.docs.mkdir(parents=True, exist_ok=True)
        name = "demo_loss_finetune.png" if args.init_from else "demo_loss.png"
        plot_loss(losses, args.docs / name)


if __name__ == "__main__":
    main()
