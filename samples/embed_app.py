"""Embedding the runtime in an application: load an engine folder once, generate many prompts.

    python samples/embed_app.py --engine-dir DIR [--out pictures] [--steps 30] [PROMPT ...]

Only numpy and the chosen backend are needed (no torch): this is what an app ships with.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ptdit_runtime import Pipeline

DEFAULT_PROMPTS = (
    "a red circle on a blue background",
    "a yellow triangle on a black background, left",
    "a white square on a green background, top",
)


class PictureService:
    """What an app keeps alive: one pipeline, loaded once, answering many requests."""

    def __init__(self, engine_dir: Path, backend: str = "auto"):
        started = time.perf_counter()
        self.pipe = Pipeline.from_dir(engine_dir, backend=backend)
        self.load_seconds = time.perf_counter() - started

    def picture(self, prompt: str, seed: int, steps: int, out: Path) -> tuple[Path, float]:
        result = self.pipe(prompt, steps=steps, seed=seed)
        return result.save(out)[0], result.timings.total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", nargs="*", default=list(DEFAULT_PROMPTS))
    parser.add_argument("--engine-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("pictures"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    service = PictureService(args.engine_dir, args.backend)
    print(f"loaded {args.engine_dir} in {service.load_seconds:.2f} s")
    for i, prompt in enumerate(args.prompts):
        path, seconds = service.picture(prompt, seed=i, steps=args.steps, out=args.out / f"{i:03d}.png")
        print(f"{seconds * 1e3:8.1f} ms  {path}  {prompt!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
