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


def smooth_frames(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Frames of different colours with gentle gradients: what H.264 keeps close, unlike noise."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for f in range(frames):
        base, phase = g.uniform(40, 215, 3), g.uniform(0, 6, 3)
        img = np.stack(
            [base[c] + 20 * np.sin(xx / 7 + phase[c]) + 20 * np.cos(yy / 5 - f) for c in range(3)], -1
        )
        out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return np.stack(out)


def read_mp4(path) -> tuple[dict, np.ndarray]:
    """Decoded RGB frames [F, H, W, 3] through ffmpeg (the independent reader)."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the test extra installs imageio-ffmpeg")
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    w, h = meta["size"]
    return meta, np.stack([np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader])


# codec tolerance for smooth content (H.264 at imageio-ffmpeg's quality 5, 4:2:0 chroma): mean
# |error| per frame <= 4 and max <= 32 of 255 (measured: mean 1.8, max 11)
MP4_MEAN, MP4_MAX = 4.0, 32


@pytest.mark.parametrize("size", [(32, 48), (15, 21)], ids=["even", "odd"])
def test_mp4_round_trip_keeps_frames_and_pixels(tmp_path, size):
    pytest.importorskip("imageio_ffmpeg", reason="the test extra installs imageio-ffmpeg")
    h, w = size
    frames = smooth_frames(6, h, w, seed=h)
    path = media.save(frames, tmp_path / "clip.mp4", fps=4)
    meta, got = read_mp4(path)
    assert meta["fps"] == 4 and meta["codec"] == "h264"
    # odd sizes come back with the last row / column repeated once (H.264 4:2:0 needs even sizes)
    assert got.shape == (6, h + h % 2, w + w % 2, 3)
    want = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge").astype(np.int16)
    for i, frame in enumerate(got.astype(np.int16)):
        err = np.abs(frame - want[i])
        assert err.mean() <= MP4_MEAN and err.max() <= MP4_MAX, (i, err.mean(), err.max())
        # in order: each decoded frame is closest to its own source frame
        assert np.argmin([np.abs(frame - other).mean() for other in want]) == i


def test_mp4_zoom_and_missing_imageio_ffmpeg(tmp_path, monkeypatch):
    pytest.importorskip("imageio_ffmpeg", reason="the test extra installs imageio-ffmpeg")
    frames = smooth_frames(3, 8, 6, seed=5)
    _, got = read_mp4(media.save(frames, tmp_path / "big.mp4", zoom=4))
    assert got.shape == (3, 32, 24, 3)
    small = got.astype(np.float32).reshape(3, 8, 4, 6, 4, 3).mean(axis=(2, 4))  # undo the zoom
    assert np.abs(small - frames).mean() <= MP4_MEAN
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install imageio-ffmpeg"):
        media.save(frames, tmp_path / "again.mp4")
