"""`ptdit-export generate` on the tiny engine folder: pictures, timing table, early errors."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ptdit_export.cli.generate_cmd import generate
from tests.runtime import builders


def run(*args: str):
    return CliRunner().invoke(generate, list(args), catch_exceptions=False)


def test_generate_writes_a_png_and_the_timing_table(engine_dir, tmp_path):
    out = tmp_path / "circle.png"
    result = run(
        "a red circle", "--engine-dir", str(engine_dir), "--steps", "3", "--seed", "1", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    picture = np.asarray(Image.open(out))
    # small pictures are written enlarged 8 x 8 by default (nearest neighbour)
    assert picture.shape == (8 * builders.PIXELS, 8 * builders.PIXELS, 3) and "shown 8x8" in result.output
    assert np.array_equal(picture[3::8, 5::8], picture[::8, ::8])
    picture = picture[::8, ::8]
    for row in ("text encoder", "transformer x 3", "VAE decoder", "Pipeline"):
        assert row in result.output
    # the same seed through the library gives the same picture
    from ptdit_runtime import Pipeline

    want = Pipeline.from_dir(engine_dir, backend="onnxruntime", provider="cpu")(
        "a red circle", steps=3, seed=1
    )
    np.testing.assert_array_equal(picture, want.images[0])


def test_zoom_one_writes_the_exact_pixels(engine_dir, tmp_path):
    out = tmp_path / "exact.png"
    result = run(
        "a red circle", "--engine-dir", str(engine_dir), "--steps", "2", "--zoom", "1", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(out)).shape == (builders.PIXELS, builders.PIXELS, 3)


def test_several_prompts_get_numbered_files(engine_dir, tmp_path):
    result = run("a red circle", "a blue square", "--engine-dir", str(engine_dir), "--steps", "2", "-o",
                 str(tmp_path / "pic"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pic_000.png", "pic_001.png"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--steps", "0"], "steps must be a positive integer"),
        (["--height", "40"], "height=40 must be a positive multiple of 16"),
        (["--width", "128"], "outside the engine's profile"),
        (["--frames", "3", "-o", "x.png"], "frames"),
        (["--guidance", "-2"], "guidance must be"),
    ],
)
def test_bad_input_is_refused_before_loading(engine_dir, tmp_path, args, message, monkeypatch):
    from ptdit_runtime import Pipeline

    def no_loading(*a, **k):
        raise AssertionError("engines were loaded before the request was checked")

    monkeypatch.setattr(Pipeline, "from_dir", no_loading)
    argv = ["a prompt", "--engine-dir", str(engine_dir), *args]
    if "-o" not in args:
        argv += ["-o", str(tmp_path / "x.png")]
    result = CliRunner().invoke(generate, argv)
    assert result.exit_code != 0
    assert message in result.output


def test_missing_folder_and_long_prompt(engine_dir, tmp_path):
    result = builders.run_cli(
        "generate", "x", "--engine-dir", str(tmp_path / "none"), "-o", str(tmp_path / "a.png")
    )
    builders.assert_one_error(result, 1, "does not exist")
    long = " ".join(["red circle"] * 12)
    result = run(long, "--engine-dir", str(engine_dir), "--steps", "1", "-o", str(tmp_path / "long.png"))
    assert result.exit_code == 0
    assert "has 25 tokens; the text encoder takes 16" in result.output
