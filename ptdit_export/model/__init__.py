"""PT-DiT in PyTorch: config, layout, attention seam, blocks, the model, checkpoints.

`PTDiT` (and with it torch) is imported on first use, so the config, the presets and their
parameter counts load without torch (`ptdit-export presets` runs in well under a second).
"""

from typing import Any

from ptdit_export.model.config import PTDiTConfig, window_schedule
from ptdit_export.model.presets import load_config

__all__ = ["PTDiT", "PTDiTConfig", "load_config", "window_schedule"]


def __getattr__(name: str) -> Any:
    if name == "PTDiT":
        from ptdit_export.model.ptdit import PTDiT

        return PTDiT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
