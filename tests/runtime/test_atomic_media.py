"""Pictures, videos and latents are written atomically: a full disk (ENOSPC injected at each
point of a write) never replaces an existing file or leaves a partial one; permissions follow
the umask; an output folder that cannot be written is refused before any work."""

from __future__ import annotations

import errno
import os
import time

import numpy as np
import pytest
from PIL import Image

from ptdit_runtime import atomic, media


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def random_picture(g, frames: int = 1) -> np.ndarray:
    shape = (int(g.integers(1, 4)), int(g.integers(2, 12)), int(g.integers(2, 12)), 3)
    return g.integers(0, 256, (frames, *shape[1:]), dtype=np.uint8)


def partial_writer(real):
    """Like PIL's save, but the disk fills up after some bytes: those bytes land, then ENOSPC."""

    def save(self, fp, *args, **kwargs):
        real(self, fp, *args, **kwargs)
        with open(fp, "r+b") as f:
            f.truncate(max(os.path.getsize(fp) // 2, 1))
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def write(kind: str, g, path):
    if kind == "npy":
        return media.save_latents(g.standard_normal((1, 4, 1, 3, 3)).astype(np.float32), path)
    return media.save(random_picture(g, 3 if kind == "gif" else 1), path, fps=int(g.integers(1, 30)))


@pytest.mark.parametrize("kind", ["png", "gif", "npy"])
@pytest.mark.parametrize("where", ["writer", "fsync", "rename"])
def test_full_disk_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch, kind, where):
    g = np.random.default_rng()
    path = tmp_path / f"out.{kind}"
    write(kind, g, path)
    before = path.read_bytes()
    if where == "writer" and kind == "npy":
        monkeypatch.setattr(np, "save", lambda f, arr: (f.write(b"\x93NUMPY partial"), enospc()))
    elif where == "writer":
        monkeypatch.setattr(Image.Image, "save", partial_writer(Image.Image.save))
    elif where == "fsync":
        monkeypatch.setattr(atomic.os, "fsync", enospc)
    else:
        monkeypatch.setattr(atomic.os, "replace", enospc)
    with pytest.raises(OSError) as err:
        write(kind, g, path)
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before  # the old file, byte for byte
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial or temporary file


def test_a_write_replaces_the_file_whole(tmp_path):
    g = np.random.default_rng()
    pixels = random_picture(g)[0]
    path = tmp_path / "pic.png"
    path.write_bytes(b"old" * 1000)
    media.save(pixels, path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)
    assert [p.name for p in tmp_path.iterdir()] == ["pic.png"]


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        media.save(np.zeros((2, 2, 3), np.uint8), tmp_path / "a.png")
        media.save_latents(np.zeros(3, np.float32), tmp_path / "z.npy")
    finally:
        os.umask(old)
    for name in ("a.png", "z.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


def test_stale_temporary_files_are_removed_fresh_ones_kept(tmp_path):
    stale, fresh = tmp_path / ".pic.0badf00d.tmp.png", tmp_path / ".pic.12345678.tmp.png"
    for p in (stale, fresh):
        p.write_bytes(b"partial")
    old = time.time() - atomic.STALE_S - 60
    os.utime(stale, (old, old))
    media.save(np.zeros((2, 2, 3), np.uint8), tmp_path / "pic.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, "pic.png"])


def test_unwritable_outputs_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    for path, needle in (
        (tmp_path / "file" / "x.png", "cannot write"),
        (tmp_path, "is a folder"),
        ("/proc/no-such-dir/x.png", "cannot write"),
    ):
        with pytest.raises(atomic.OutputNotWritable, match=needle):
            atomic.check_writable(path)
    assert atomic.check_writable(tmp_path / "new" / "x.png").parent.is_dir()
    assert not any((tmp_path / "new").iterdir())  # the probe file is gone
