"""ptdit-export: PT-DiT from PyTorch to ONNX, TensorRT and Ascend, with a small runtime."""

__version__ = "0.1.0"
