"""Show the demo's synthetic picture set: a contact sheet of pictures with their captions.

    python samples/demo_data.py                     # 24 pictures -> demo_data.png
    python samples/demo_data.py --held-out --n 45   # the held-out combinations (never trained on)

Each picture is also read back by the adherence judge (`ptdit_export.demo.measure`); the
rates it prints are 1.0 on clean pictures, which is what makes the judge usable on generated ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ptdit_export import demo


def contact_sheet(images: np.ndarray, captions: list[str], path: Path, scale: int = 4, cols: int = 6) -> None:
    """Pictures [N, H, W, 3] in a grid, each enlarged `scale` times with its caption below."""
    from PIL import Image, ImageDraw

    n, h, w, _ = images.shape
    cell_w, cell_h = max(w * scale, 150), h * scale + 28
    rows = -(-n // cols)
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, caption) in enumerate(zip(images, captions)):
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        big = Image.fromarray((image * 255).round().astype(np.uint8)).resize((w * scale, h * scale), 0)
        sheet.paste(big, (x + (cell_w - w * scale) // 2, y))
        text = caption.replace(" background", "").replace("a ", "") or "(empty)"
        draw.text((x + 4, y + h * scale + 4), text, fill="black")
    sheet.save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=24, help="how many pictures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out", action="store_true", help="draw the held-out combinations instead")
    p.add_argument("--out", type=Path, default=Path("demo_data.png"))
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    if args.held_out:
        scenes = demo.held_out_scenes()[: args.n]
        images = np.stack([demo.render(s, rng) for s in scenes])
        captions = [s.caption() for s in scenes]
    else:
        batch, captions = demo.make_batch(rng, args.n)
        images = batch.transpose(0, 2, 3, 1)
        scenes = [demo.parse_caption(c) if c else None for c in captions]
    judged = [(im, s) for im, s in zip(images, scenes) if s is not None]
    rates = demo.adherence(np.stack([im for im, _ in judged]), [s for _, s in judged])
    contact_sheet(images, captions, args.out)
    print(f"wrote {args.out} ({len(images)} pictures); judge on these clean pictures: {rates}")


if __name__ == "__main__":
    main()
