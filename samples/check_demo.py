"""Prompt adherence of the shipped demo, in PyTorch and through a built engine, and their parity.

    ptdit-export build                       # engines/demo (fp16 by the README's command)
    python samples/check_demo.py             # 45 held-out prompts x 2 seeds, 30 steps
    python samples/check_demo.py --engine-dir engines/demo-fp32 --sheet docs/demo_held_out.png

Every held-out prompt (a combination never shown in training) is drawn from the same seeds by
the PyTorch pipeline (fp32) and by ptdit_runtime over the engine folder; each picture is judged
by pixel statistics (`ptdit_export.demo.measure`) and its colours measured against the palette
(`ptdit_export.demo.colour_fidelity`). Prints the rates and colour errors of both and the largest
difference between their pictures, relative to the largest PyTorch value, against the loop
tolerance written down for the engine's precision.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ptdit_export import demo
from ptdit_export.tolerances import tolerance


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-dir", type=Path, default=Path("engines/demo"))
    p.add_argument("--seeds", type=int, default=2, help="noise seeds per held-out prompt")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sheet", type=Path, help="also write the engine's pictures as a captioned sheet")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)

    found = args.engine_dir / "manifest.json"
    if not found.is_file():
        raise SystemExit(
            f"no built engine folder at {args.engine_dir}; run `ptdit-export build --out {args.engine_dir}`"
        )
    manifest = json.loads(found.read_text())
    precision = manifest.get("precision", "fp32")
    seeds = tuple(range(args.seeds))
    scenes = demo.held_out_scenes()
    with torch.no_grad():
        eager_rates, eager = demo.check_adherence(
            demo.load_components().generate, scenes, seeds, args.steps, args.guidance
        )
    engine_rates, engine = demo.check_adherence(
        demo.runtime_drawer(args.engine_dir, args.threads), scenes, seeds, args.steps, args.guidance
    )
    diff = demo.picture_difference(engine, eager)
    err, mean_err, same = diff["relative_max"], diff["mean_abs"], diff["judged_same"]
    # quantized engines have no pixel bound (a few pixels change colour): the goals judge them
    quantized = precision in ("int8", "fp8")
    bound = float("inf") if quantized else tolerance("loop-pictures", precision)

    print(
        f"{len(eager)} pictures: {len(scenes)} held-out prompts x {len(seeds)} seeds, {args.steps} steps, "
        f"guidance {args.guidance}"
    )
    print("| pipeline | colours | foreground | background | position | shape |")
    print("|---|---|---|---|---|---|")
    for name, rates in (
        ("PyTorch fp32", eager_rates),
        (f"engine ({manifest['backend']}, {precision})", engine_rates),
    ):
        cells = " | ".join(
            f"{rates[k]:.1%}" for k in ("colours", "foreground", "background", "position", "shape")
        )
        print(f"| {name} | {cells} |")
    print()
    print("colour fidelity: RGB distance (0-255) of each picture's median region colour from the palette")
    print("| pipeline | background median | background p90 | foreground median | foreground p90 |")
    print("|---|---|---|---|---|")
    for name, rates in (
        ("PyTorch fp32", eager_rates),
        (f"engine ({manifest['backend']}, {precision})", engine_rates),
    ):
        cells = " | ".join(
            f"{rates[f'{role}_error_{stat}']:.1f}"
            for role in ("background", "foreground")
            for stat in ("median", "p90")
        )
        print(f"| {name} | {cells} |")
    print()
    print(
        f"engine vs PyTorch pictures: mean abs error {mean_err:.2e} (loop-pictures tolerance "
        f"{precision}: {bound:g}), relative max error {err:.2e} (a few edge pixels; docs/demo.md); "
        f"judged identically {same}/{len(eager)}"
    )
    met = (
        engine_rates["colours"] >= 0.9
        and engine_rates["position"] >= 0.75
        and demo.fidelity_met(engine_rates)
    )
    goal = demo.FIDELITY_GOAL
    print(
        f"goals (colours >= 90%, position >= 75%, colour error median <= {goal['median']:g}, "
        f"p90 <= {goal['p90']:g}): {'met' if met else 'NOT met'}"
    )
    if args.sheet:
        from demo_data import contact_sheet

        todo = [s.caption() for _ in seeds for s in scenes]
        contact_sheet(engine, todo, args.sheet)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "pictures": len(eager),
                    "steps": args.steps,
                    "guidance": args.guidance,
                    "seeds": len(seeds),
                    "pytorch_fp32": eager_rates,
                    "engine": engine_rates,
                    "engine_precision": precision,
                    "relative_max_error": err,
                    "mean_abs_error": mean_err,
                    "loop_tolerance": bound if np.isfinite(bound) else None,
                    "judged_identically": same,
                },
                indent=2,
            )
            + "\n"
        )
    if mean_err > bound or (not quantized and same < len(eager)):
        raise SystemExit(
            f"engine pictures differ from PyTorch: mean abs error {mean_err:.2e} (bound {bound:g}), "
            f"{same}/{len(eager)} judged the same"
        )


if __name__ == "__main__":
    main()
