"""Pictures out: uint8 conversion, PNG (one frame), GIF (Pillow) and MP4 (imageio-ffmpeg)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float [B, 3, F, H, W] in [0, 1] -> uint8 [B, F, H, W, 3] (rounded to nearest)."""
    x = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0) * 255.0
    return np.rint(x).astype(np.uint8).transpose(0, 2, 3, 4, 1)


def save(frames: np.ndarray, path: str | Path, fps: int = 8, zoom: int = 1) -> Path:
    """Write uint8 [H, W, 3] or [F, H, W, 3] to .png (one frame), .gif or .mp4, each pixel
    repeated `zoom` x `zoom` times (nearest neighbour: the pixels stay exact, only bigger)."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"save takes uint8 pixels; got {frames.dtype} (use to_uint8 first)")
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"save takes [H, W, 3] or [F, H, W, 3]; got shape {frames.shape}")
    if zoom < 1:
        raise ValueError(f"zoom must be a whole number >= 1; got {zoom}")
    frames = frames.repeat(zoom, axis=1).repeat(zoom, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    from PIL import Image

    if suffix == ".png":
        if len(frames) != 1:
            raise ValueError(f"{path}: a PNG holds one frame but there are {len(frames)}; write .gif or .mp4")
        Image.fromarray(frames[0]).save(path)
    elif suffix == ".gif":
        pictures = [Image.fromarray(f) for f in frames]
        pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0)
    elif suffix == ".mp4":
        write_mp4(frames, path, fps)
    else:
        raise ValueError(f"{path}: unknown picture format {suffix!r}; use .png, .gif or .mp4")
    return path


def write_mp4(frames: np.ndarray, path: Path, fps: int) -> None:
    """H.264 in yuv420p (what players take), which needs even sizes: an odd height or width
    gets its last row or column repeated once (ffmpeg would otherwise write an empty file)."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise RuntimeError(
            f"writing {path} needs imageio-ffmpeg (pip install imageio-ffmpeg); or write a .gif instead"
        )
    import imageio_ffmpeg

    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    writer = imageio_ffmpeg.write_frames(
        str(path), (w + w % 2, h + h % 2), fps=fps, macro_block_size=1, pix_fmt_out="yuv420p"
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"ffmpeg wrote no video to {path}; write a .gif instead")
