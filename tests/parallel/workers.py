"""Code the spawned ranks run (module level, so `launch.spawn` can import it).

Every rank builds the same randomised model and inputs from the case's seed, computes the
single-process PTDiT output itself (the reference) and the sharded one, and reports the
relative error and the bytes its counted collectives sent.
"""

from __future__ import annotations

import torch

from ptdit_export.model import PTDiT
from ptdit_export.parallel import Comm, ShardedPTDiT
from tests.conftest import randomise, rel_max_error


def _inputs(model: PTDiT, case: dict, g: torch.Generator):
    cfg = model.config
    b, (f, hh, ww), length = case["batch"], case["latent"], case["text_len"]
    x = torch.randn(b, cfg.in_channels, f, hh, ww, generator=g)
    t = torch.rand(b, generator=g) * 1000  # a different timestep per sample: the tiling quirk shows
    text = torch.randn(b, length, cfg.caption_channels or cfg.hidden_size, generator=g)
    keep = torch.randint(1, length + 1, (b,), generator=g)
    mask = (torch.arange(length)[None] < keep[:, None]).long()
    if case.get("empty_caption"):
        mask[-1] = 0  # a fully padded caption: -10000 everywhere, attends uniformly
    return x, t, text, mask


def _model(case: dict) -> PTDiT:
    torch.manual_seed(case["seed"])
    model = PTDiT.from_config(case["preset"], **case.get("overrides", {}))
    return randomise(model, case["seed"]).eval()


def forward_cases(rank: int, cases: list[dict], loop: dict | None = None, steps: int = 5) -> dict:
    """Sharded forward vs the single-process model, per case, with the counted bytes; and
    `loop_case(loop, steps)` when a loop case is given."""
    comm = Comm.from_env("gloo")
    out = []
    for case in cases:
        model = _model(case)
        g = torch.Generator().manual_seed(case["seed"])
        args = _inputs(model, case, g)
        if model.config.use_additional_conditions:  # PixArt resolution / aspect-ratio inputs
            b = case["batch"]
            args = (
                *args,
                {
                    "resolution": torch.rand(b, 2, generator=g) * 1024,
                    "aspect_ratio": torch.rand(b, 1, generator=g),
                },
            )
        with torch.no_grad():
            ref = model(*args)
            comm.reset()
            got = ShardedPTDiT(model, comm)(*args)
        out.append({"err": rel_max_error(got, ref), "sent": dict(comm.sent), "calls": dict(comm.calls)})
    return {"cases": out, "loop": loop_case(comm, loop, steps) if loop else None}


def loop_case(comm: Comm, case: dict, steps: int) -> float:
    """A whole guided rflow loop on slabs (forward_slab) vs the same loop on the full model."""
    from ptdit_runtime import SchedulerConfig, make_sampler

    model = _model(case)
    sharded = ShardedPTDiT(model, comm)
    x, _, text, mask = _inputs(model, case, torch.Generator().manual_seed(case["seed"]))
    f, hh, ww = case["latent"]
    plan = sharded.plan(f, hh, ww)
    p = model.config.patch_size
    c = model.config.in_channels

    def run(fn, z):
        sampler = make_sampler(SchedulerConfig(kind="rflow"), steps, hh * 8, ww * 8, f)
        z = z.numpy()
        for i, t in enumerate(sampler.timesteps):
            zin = torch.from_numpy(z).repeat(2, 1, 1, 1, 1)  # conditional and unconditional halves
            tt = torch.full((zin.shape[0],), float(t))
            pred = fn(zin, tt)[:, :c].numpy()
            pred = pred[1:] + 4.0 * (pred[:1] - pred[1:])
            z = sampler.step(i, z, pred)
        return torch.from_numpy(z)

    with torch.no_grad():
        ref = run(lambda z, t: model(z, t, text, mask), x[:1])
        local = run(lambda z, t: sharded.forward_slab(z, t, text, mask, hh), plan.slice_rows(x[:1], 3, p))
    got = torch.cat(comm.all_gather(local, "latents"), dim=3)
    return rel_max_error(got, ref)
