"""Pictures out: uint8 conversion, PNG (one frame), GIF (Pillow), MP4 (imageio-ffmpeg) and .npy
latents, each written atomically (ptdit_runtime.atomic: a full disk never leaves a partial file)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ptdit_runtime.atomic import atomic_path

MAX_SIDE = 16384  # pixels per side of a written picture, zoom included
MAX_FPS = 1000


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
    check_zoom_fps(frames.shape[1], frames.shape[2], zoom, fps)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".gif", ".mp4"):
        raise ValueError(f"{path}: unknown picture format {suffix!r}; use .png, .gif or .mp4")
    if suffix == ".png" and len(frames) != 1:
        raise ValueError(f"{path}: a PNG holds one frame but there are {len(frames)}; write .gif or .mp4")
    frames = frames.repeat(zoom, axis=1).repeat(zoom, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    with atomic_path(path) as tmp:
        if suffix == ".png":
            Image.fromarray(frames[0]).save(tmp, format="PNG")
        elif suffix == ".gif":
            pictures = [Image.fromarray(f) for f in frames]
            pictures[0].save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=pictures[1:],
                duration=round(1000 / fps),
                loop=0,
            )
        else:
            write_mp4(frames, tmp, fps)
    return path


def check_zoom_fps(height: int, width: int, zoom: int = 1, fps: int = 8) -> None:
    """zoom and fps are whole numbers in range, and the zoomed picture stays below MAX_SIDE."""
    if not isinstance(zoom, (int, np.integer)) or isinstance(zoom, bool) or zoom < 1:
        raise ValueError(f"zoom must be a whole number >= 1; got {zoom!r}")
    if max(height, width) * zoom > MAX_SIDE:
        raise ValueError(
            f"zoom={zoom} makes {width * zoom}x{height * zoom} pixels, above the limit of {MAX_SIDE} per side; "
            f"pass a zoom up to {max(MAX_SIDE // max(height, width, 1), 1)}"
        )
    if not isinstance(fps, (int, np.integer)) or isinstance(fps, bool) or not 1 <= fps <= MAX_FPS:
        raise ValueError(f"fps must be a whole number from 1 to {MAX_FPS}; got {fps!r}")


def save_latents(latents: np.ndarray, path: str | Path) -> Path:
    """Write latents to a .npy file (atomically)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: latents are written as .npy; name the file NAME.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(latents))
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
