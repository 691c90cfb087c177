"""Pictures out: uint8 conversion, PNG, GIF (Pillow) and MP4 (imageio-ffmpeg when installed)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image, ImageSequence

from ptdit_runtime import media


def test_to_uint8_rounds_and_moves_channels_last():
    images = np.zeros((1, 3, 2, 2, 2), np.float32)
    images[0, 0, 0, 0, 0] = 0.5  # 127.5 -> 128 (round half to even gives 128)
    images[0, 1, 1, 1, 1] = 1.7  # clipped
    images[0, 2, 0, 1, 0] = -0.3  # clipped
    images[0, 2, 1, 0, 1] = 0.2  # 51
    out = media.to_uint8(images)
    assert out.shape == (1, 2, 2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0, 0, 0, 0] == 128 and out[0, 1, 1, 1, 1] == 255 and out[0, 0, 1, 0, 2] == 0
    assert out[0, 1, 0, 1, 2] == 51


def palette_frames(frames: int, seed: int = 0) -> np.ndarray:
    """Pictures made of a few colours, which a GIF stores exactly."""
    g = np.random.default_rng(seed)
    colours = np.array([[230, 25, 25], [25, 50, 230], [240, 240, 240], [10, 10, 10]], np.uint8)
    return colours[g.integers(0, 4, (frames, 16, 24))]


def test_png_round_trip(tmp_path):
    picture = np.random.default_rng(1).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    path = media.save(picture, tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), picture)
    with pytest.raises(ValueError, match="write .gif or .mp4"):
        media.save(palette_frames(3), tmp_path / "b.png")
    with pytest.raises(ValueError, match="uint8"):
        media.save(picture.astype(np.float32), tmp_path / "c.png")
    with pytest.raises(ValueError, match="unknown picture format"):
        media.save(picture, tmp_path / "d.jpeg2")


def test_zoom_repeats_every_pixel(tmp_path):
    picture = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    big = np.asarray(Image.open(media.save(picture, tmp_path / "z.png", zoom=3)))
    assert big.shape == (15, 21, 3)
    for i in range(3):
        for j in range(3):
            np.testing.assert_array_equal(big[i::3, j::3], picture)
    with pytest.raises(ValueError, match="zoom"):
        media.save(picture, tmp_path / "y.png", zoom=0)


def test_gif_round_trip(tmp_path):
    frames = palette_frames(5)
    path = media.save(frames, tmp_path / "clip.gif", fps=10)
    with Image.open(path) as gif:
        got = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
        assert gif.info["duration"] == 100
    assert len(got) == 5
    np.testing.assert_array_equal(np.stack(got), frames)


def test_mp4_needs_imageio_ffmpeg(tmp_path, monkeypatch):
    frames = palette_frames(4)
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        with pytest.raises(RuntimeError, match="pip install imageio-ffmpeg"):
            media.save(frames, tmp_path / "clip.mp4")
        return
    path = media.save(frames, tmp_path / "clip.mp4", fps=4)
    assert path.stat().st_size > 0
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert tuple(meta["size"]) == (24, 16)
    assert len(list(reader)) == 4
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install imageio-ffmpeg"):
        media.save(frames, tmp_path / "again.mp4")
