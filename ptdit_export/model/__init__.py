"""PT-DiT in PyTorch: config, layout, attention seam, blocks, the model, checkpoints."""

from ptdit_export.model.config import PTDiTConfig, window_schedule
from ptdit_export.model.presets import load_config
from ptdit_export.model.ptdit import PTDiT

__all__ = ["PTDiT", "PTDiTConfig", "load_config", "window_schedule"]
