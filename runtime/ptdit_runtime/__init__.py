"""ptdit_runtime: an embeddable runtime for PT-DiT engine folders (NumPy + one backend).

    from ptdit_runtime import Pipeline
    pipe = Pipeline.from_dir("engines/demo")   # load once
    out = pipe(["a red circle on a blue background"], steps=30, guidance=4.0, seed=0)
    out.save("circle.png"); print(out.timings.table())

The core imports numpy only; each backend imports its library when chosen (onnxruntime,
tensorrt + cuda-python, or torch for the reference backend). See docs/runtime.md.
"""

from ptdit_runtime.configs import SchedulerConfig, TextEncoderConfig, VaeDecoderConfig
from ptdit_runtime.engines import Engine, TensorSpec, load_engine
from ptdit_runtime.folder import EngineFolder, MissingComponent
from ptdit_runtime.manifest import FolderError, MissingManifest
from ptdit_runtime.media import save, to_uint8
from ptdit_runtime.pipeline import NonFiniteError, Pipeline, PipelineOutput
from ptdit_runtime.request import Request, check_request
from ptdit_runtime.schedulers import make_sampler
from ptdit_runtime.timing import Timings

__version__ = "0.1.0"

__all__ = [
    "Engine",
    "EngineFolder",
    "FolderError",
    "MissingManifest",
    "NonFiniteError",
    "MissingComponent",
    "Pipeline",
    "PipelineOutput",
    "Request",
    "check_request",
    "SchedulerConfig",
    "TensorSpec",
    "TextEncoderConfig",
    "Timings",
    "VaeDecoderConfig",
    "load_engine",
    "make_sampler",
    "save",
    "to_uint8",
]
