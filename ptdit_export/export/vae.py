"""VAE decoders -> DIR/vae_decoder/model.onnx (the runtime's last stage).

Decoder contract (docs/runtime.md): input `latent` [B, C, F, h, w] float32 in the VAE's own
space (the runtime un-scales first: z / scaling_factor + shift_factor), output `images`
[B, 3, F, H, W] float32 in [0, 1]. Batch, frames, h and w are dynamic.

- `onnx_from_vae(vae, out_dir)`: a diffusers AutoencoderKL-style image VAE (anything with
  `.decode(z, return_dict=False)[0]` and a `config` holding latent_channels, scaling_factor,
  shift_factor, block_out_channels); frames are folded into the batch.
- `SpaceToDepthVAE`: an exact, parameter-free "VAE" for small demo models. Pixels in [0, 1]
  map to [-1, 1] and each s x s block of a picture becomes 3*s*s channels of one latent:
  latent channel c*s*s + dy*s + dx at (f, y, x) holds colour c of pixel (f, s*y + dy, s*x + dx)
  (the layout of torch's pixel_unshuffle). Decoding inverts it exactly.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from ptdit_export.export.artifacts import atomic_dir, update_model_index, write_json
from ptdit_export.export.text_encoder import save_onnx_program
from ptdit_export.export.transformer import IR_VERSION, validate_onnx
from ptdit_runtime.configs import VaeDecoderConfig

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ AutoencoderKL
class _FrameDecoder(torch.nn.Module):
    """[B, C, F, h, w] -> [B, 3, F, H, W] in [0, 1] with an image VAE, frame by frame."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = latent.shape
        z = latent.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # (B F, C, h, w)
        x = self.vae.decode(z, return_dict=False)[0]  # (B F, 3, H, W) in [-1, 1]
        x = (x / 2 + 0.5).clamp(0, 1)
        return x.reshape(b, f, x.shape[1], x.shape[2], x.shape[3]).permute(0, 2, 1, 3, 4)


def onnx_from_vae(vae: torch.nn.Module | str | Path, out_dir: str | Path, opset: int = 18) -> Path:
    """Export the decoder of an AutoencoderKL (module or local diffusers folder) into `out_dir`."""
    if isinstance(vae, (str, Path)):
        from diffusers import AutoencoderKL

        folder = Path(vae)
        sub = "vae" if (folder / "vae" / "config.json").is_file() else None
        vae = AutoencoderKL.from_pretrained(folder, subfolder=sub, local_files_only=True)
    out_dir = Path(out_dir)
    cfg = vae.config
    vae = vae.float().eval()
    example = torch.randn(2, cfg.latent_channels, 2, 8, 12)  # sizes != 1 so nothing is specialised
    dims = {
        0: torch.export.Dim("batch", min=1, max=256),
        2: torch.export.Dim("frames", min=1, max=1024),
        3: torch.export.Dim("height", min=2, max=1024),
        4: torch.export.Dim("width", min=2, max=1024),
    }
    parameters = sum(p.numel() for p in vae.parameters())
    log.info("exporting the VAE decoder (%d parameters)", parameters)
    with torch.no_grad():
        program = torch.onnx.export(
            _FrameDecoder(vae).eval(),
            (example,),
            dynamo=True,
            input_names=["latent"],
            output_names=["images"],
            dynamic_shapes={"latent": dims},
            opset_version=opset,
            verbose=False,
        )
    config = VaeDecoderConfig(
        kind="autoencoder_kl",
        latent_channels=int(cfg.latent_channels),
        scaling_factor=float(cfg.scaling_factor),
        shift_factor=float(getattr(cfg, "shift_factor", None) or 0.0),
        spatial_compression=2 ** (len(cfg.block_out_channels) - 1),
        temporal_compression=1,
        opset=opset,
    )
    _write_component(out_dir, config, lambda path: save_onnx_program(program, path, parameters))
    return out_dir / "vae_decoder" / "model.onnx"


def _write_component(out_dir: Path, config: VaeDecoderConfig, write_model) -> None:
    """out_dir/vae_decoder/{model.onnx, config.json}, written atomically, and the model index."""
    with atomic_dir(out_dir / "vae_decoder") as tmp:
        write_model(tmp / "model.onnx")
        write_json(tmp / "config.json", dataclasses.asdict(config))
    update_model_index(out_dir, vae_decoder="vae_decoder")


# ------------------------------------------------------------------ space-to-depth
class SpaceToDepthVAE(torch.nn.Module):
    """Exact pixels <-> latents by a reshape: [B, 3, F, H, W] in [0, 1] <-> [B, 3*s*s, F, H/s, W/s].

    encode: x = 2*pixels - 1, then each s x s block to channels (layout in the module doc);
    decode: the inverse, then (x + 1) / 2 clipped to [0, 1]. scaling_factor / shift_factor
    are recorded for the runtime (latents given to the denoiser are (z - shift) * scale).
    """

    def __init__(self, factor: int = 2, scaling_factor: float = 1.0, shift_factor: float = 0.0):
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1; got {factor}")
        self.factor, self.scaling_factor, self.shift_factor = factor, scaling_factor, shift_factor

    @property
    def latent_channels(self) -> int:
        return 3 * self.factor**2

    def config(self, opset: int = 18) -> VaeDecoderConfig:
        return VaeDecoderConfig(
            kind="space_to_depth",
            latent_channels=self.latent_channels,
            scaling_factor=self.scaling_factor,
            shift_factor=self.shift_factor,
            spatial_compression=self.factor,
            temporal_compression=1,
            opset=opset,
        )

    def _check(self, h: int, w: int) -> None:
        if h % self.factor or w % self.factor:
            raise ValueError(f"picture {h}x{w} is not divisible by the space-to-depth factor {self.factor}")

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, F, H, W] in [0, 1] -> [B, 3*s*s, F, H/s, W/s] in [-1, 1] (VAE space, unscaled)."""
        b, c, f, h, w = pixels.shape
        self._check(h, w)
        s = self.factor
        x = (2 * pixels - 1).reshape(b, c, f, h // s, s, w // s, s)  # (B, 3, F, h, dy, w, dx)
        return x.permute(0, 1, 4, 6, 2, 3, 5).reshape(b, c * s * s, f, h // s, w // s)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, 3*s*s, F, h, w] -> [B, 3, F, h*s, w*s] in [0, 1]."""
        b, _, f, h, w = latent.shape
        s = self.factor
        x = latent.reshape(b, 3, s, s, f, h, w).permute(0, 1, 4, 5, 2, 6, 3)  # (B, 3, F, h, dy, w, dx)
        return ((x.reshape(b, 3, f, h * s, w * s) + 1) / 2).clamp(0, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decode(latent)

    @staticmethod
    def encode_numpy(pixels: np.ndarray, factor: int = 2) -> np.ndarray:
        """The same encode for training data without torch: float [B, 3, F, H, W] in [0, 1]
        (or uint8 [B, F, H, W, 3] pictures) -> float32 [B, 3*s*s, F, H/s, W/s]."""
        x = np.asarray(pixels)
        if x.dtype == np.uint8:
            x = x.astype(np.float32).transpose(0, 4, 1, 2, 3) / 255.0
        b, c, f, h, w = x.shape
        if h % factor or w % factor:
            raise ValueError(f"picture {h}x{w} is not divisible by the space-to-depth factor {factor}")
        s = factor
        x = (2 * x.astype(np.float32) - 1).reshape(b, c, f, h // s, s, w // s, s)
        return np.ascontiguousarray(x.transpose(0, 1, 4, 6, 2, 3, 5).reshape(b, c * s * s, f, h // s, w // s))

    def onnx_decoder(self, out_dir: str | Path, opset: int = 18) -> Path:
        """Write the decoder as a hand-built ONNX graph (Shape/Reshape/Transpose/Clip: exact)
        into out_dir/vae_decoder, with its config.json."""
        out_dir = Path(out_dir)
        _write_component(
            out_dir, self.config(opset), lambda p: _space_to_depth_decoder_onnx(self.factor, p, opset)
        )
        return out_dir / "vae_decoder" / "model.onnx"


def _space_to_depth_decoder_onnx(s: int, path: Path, opset: int) -> None:
    import onnx
    from onnx import TensorProto, helper

    def const(name: str, values: list[int]) -> onnx.NodeProto:  # an int64 [len(values)] constant
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
        )

    def dim(i: int) -> onnx.NodeProto:  # one axis of the latent's runtime shape, as [1] int64
        return helper.make_node("Slice", ["shape", f"i{i}", f"i{i + 1}"], [f"d{i}"])

    nodes = [
        helper.make_node("Shape", ["latent"], ["shape"]),
        *(const(f"i{i}", [i]) for i in range(6)),
        const("three", [3]),
        const("s", [s]),
        *(dim(i) for i in (0, 2, 3, 4)),
        # (B, 3*s*s, F, h, w) -> (B, 3, dy, dx, F, h, w)
        helper.make_node("Concat", ["d0", "three", "s", "s", "d2", "d3", "d4"], ["split_shape"], axis=0),
        helper.make_node("Reshape", ["latent", "split_shape"], ["split"]),
        # -> (B, 3, F, h, dy, w, dx)
        helper.make_node("Transpose", ["split"], ["moved"], perm=[0, 1, 4, 5, 2, 6, 3]),
        helper.make_node("Mul", ["d3", "s"], ["rows"]),
        helper.make_node("Mul", ["d4", "s"], ["cols"]),
        helper.make_node("Concat", ["d0", "three", "d2", "rows", "cols"], ["image_shape"], axis=0),
        helper.make_node("Reshape", ["moved", "image_shape"], ["signed"]),
        # [-1, 1] -> [0, 1]
        helper.make_node("Add", ["signed", "one"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "half"], ["unclipped"]),
        helper.make_node("Clip", ["unclipped", "zero", "one"], ["images"]),
    ]
    scalars = [
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
    ]
    graph = helper.make_graph(
        nodes,
        "space_to_depth_decoder",
        [
            helper.make_tensor_value_info(
                "latent", TensorProto.FLOAT, ["batch", 3 * s * s, "frames", "h", "w"]
            )
        ],
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT, ["batch", 3, "frames", "height", "width"]
            )
        ],
        initializer=scalars,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="ptdit-export"
    )
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    validate_onnx(path)
