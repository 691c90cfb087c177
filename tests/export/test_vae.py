"""VAE decoders: onnx_from_vae against diffusers' AutoencoderKL, and the exact space-to-depth VAE.

Tolerances: the fp32 ONNX decoder vs the fp32 diffusers decoder, 1e-5 relative max error
(measured ~1e-6); everything about the space-to-depth VAE is exact (0).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ptdit_export.export.vae import SpaceToDepthVAE, onnx_from_vae
from ptdit_runtime.configs import VaeDecoderConfig
from ptdit_runtime.engines import load_engine
from ptdit_runtime.vae import VaeDecoder
from tests.conftest import assert_close, randomise

FP32_REL = 1e-5


@pytest.fixture(scope="module")
def tiny_kl(tmp_path_factory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, scaling_factor=0.3, shift_factor=0.1,
    )  # fmt: skip
    randomise(vae, seed=1).eval()  # every parameter, norms and biases included
    with torch.no_grad():
        vae.decoder.conv_out.weight *= 10  # outputs beyond [-1, 1], so the clamp is exercised
    out = tmp_path_factory.mktemp("kl")
    onnx_from_vae(vae, out)
    return vae, out


def test_kl_decoder_matches_diffusers(tiny_kl):
    import onnxruntime as ort

    vae, out = tiny_kl
    session = ort.InferenceSession(str(out / "vae_decoder" / "model.onnx"))
    g = torch.Generator().manual_seed(2)
    for shape in ((1, 4, 1, 8, 8), (2, 4, 3, 6, 10)):  # dynamic batch, frames, rows, columns
        z = torch.randn(*shape, generator=g)
        b, c, f, h, w = shape
        with torch.no_grad():
            frames = vae.decode(z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)).sample
        want = (frames / 2 + 0.5).clamp(0, 1).reshape(b, f, 3, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)
        got = session.run(None, {"latent": z.numpy()})[0]
        assert got.shape == (b, 3, f, 2 * h, 2 * w)
        assert_close(got, want, FP32_REL, f"VAE decoder at {shape}")
        assert 0.0 < (want == 0).float().mean() + (want == 1).float().mean() < 1  # clamping is exercised


def test_kl_config_and_runtime_unscaling(tiny_kl):
    vae, out = tiny_kl
    config = VaeDecoderConfig.from_dict(json.loads((out / "vae_decoder" / "config.json").read_text()))
    assert (config.latent_channels, config.spatial_compression, config.temporal_compression) == (4, 2, 1)
    assert config.scaling_factor == pytest.approx(0.3) and config.shift_factor == pytest.approx(0.1)
    stage = VaeDecoder(load_engine(out / "vae_decoder", "onnxruntime", provider="cpu"), config)
    latents = np.random.default_rng(3).standard_normal((2, 4, 1, 8, 8)).astype(np.float32)  # denoiser space
    with torch.no_grad():
        want = vae.decode(torch.from_numpy(latents[:, :, 0]) / 0.3 + 0.1).sample
    want = (want / 2 + 0.5).clamp(0, 1)[:, :, None]
    assert_close(stage(latents), want, FP32_REL, "runtime VAE stage (un-scaling + decoder)")
    with pytest.raises(ValueError, match=r"\[B, 4, F, h, w\]"):
        stage(latents[:, :3])


def test_space_to_depth_layout_and_inverse():
    vae = SpaceToDepthVAE(factor=2)
    pixels = torch.rand(2, 3, 3, 8, 12)
    z = vae.encode(pixels)
    assert z.shape == (2, 12, 3, 4, 6)
    # layout: torch's pixel_unshuffle of the [-1, 1] picture, frame by frame
    for f in range(3):
        torch.testing.assert_close(
            z[:, :, f], torch.nn.functional.pixel_unshuffle(2 * pixels[:, :, f] - 1, 2), rtol=0, atol=0
        )
    torch.testing.assert_close(vae.decode(z), pixels, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(SpaceToDepthVAE.encode_numpy(pixels.numpy(), 2), z.numpy())
    uint8 = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()  # [B, F, H, W, 3]
    from_uint8 = vae.encode(torch.from_numpy(uint8).permute(0, 4, 1, 2, 3) / 255.0).numpy()
    np.testing.assert_allclose(SpaceToDepthVAE.encode_numpy(uint8, 2), from_uint8, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible"):
        vae.encode(torch.rand(1, 3, 1, 7, 8))


@pytest.mark.parametrize("factor", [2, 4])
def test_space_to_depth_onnx_decoder_is_exact(tmp_path, factor):
    import onnxruntime as ort

    vae = SpaceToDepthVAE(factor=factor, scaling_factor=0.5)
    path = vae.onnx_decoder(tmp_path)
    config = json.loads((path.parent / "config.json").read_text())
    assert config["kind"] == "space_to_depth" and config["latent_channels"] == 3 * factor**2
    assert config["spatial_compression"] == factor and config["scaling_factor"] == 0.5
    session = ort.InferenceSession(str(path))
    for shape in ((1, 3, 1, 4, 4), (2, 3, 5, 3, 7)):
        b, _, f, h, w = shape
        z = torch.randn(b, 3 * factor**2, f, h, w) * 1.5  # some values leave [-1, 1]: clipping
        got = session.run(None, {"latent": z.numpy()})[0]
        np.testing.assert_array_equal(got, vae.decode(z).numpy())
