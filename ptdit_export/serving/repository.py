"""Engine folder -> Triton model repository: one Python-backend model that runs ptdit_runtime.

    repo/
      ptdit/
        config.pbtxt      inputs, outputs, batching, instances, parameters for model.py
        serving.json      the RepoConfig this repository was written with
        1/model.py        loads ptdit_runtime.Pipeline once per instance (triton_model.py)
        1/engine/         a copy of the engine folder (or a symlink to it with link=True)

The repository needs nothing outside itself but ptdit_runtime and its backend's library in the
Python that runs the stub, so it loads unchanged in NVIDIA's Triton container.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("triton_model.py")
KINDS = ("auto", "gpu", "cpu")
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")


class RepoError(ValueError):
    """The engine folder or the options cannot make a model repository."""


@dataclass(frozen=True)
class RepoConfig:
    """How `triton_repo_from_engine` writes the repository (saved as ptdit/serving.json)."""

    model_name: str = "ptdit"  # Triton's model name (the folder under the repository)
    max_batch_size: int | None = None  # prompts per batch; None: the profile's max batch // 2 (CFG)
    preferred_batch: int | None = None  # dynamic batcher's preferred size; None: profile's opt // 2
    queue_delay_us: int = 2000  # how long the batcher waits to fill a batch
    batching: bool = True  # dynamic batching (False: every request runs alone)
    kind: str = "auto"  # instance kind: gpu (one per GPU), cpu, auto (gpu for TensorRT folders)
    instances: int | None = None  # KIND_CPU instances (implies kind cpu); None: 1
    backend: str = "auto"  # ptdit_runtime transformer backend inside model.py
    threads: int | None = None  # ONNX Runtime intra-op threads per instance (None: its default)
    png: bool = True  # also offer a `png` output (images only)
    steps: int = 30  # default steps when a request has none
    guidance: float = 4.0  # default guidance when a request has none
    link: bool = False  # symlink the engine folder instead of copying it

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} is not one of {KINDS}")
        if self.backend not in BACKENDS:
            problems.append(f"backend {self.backend!r} is not one of {BACKENDS}")
        if self.instances is not None and self.instances < 1:
            problems.append(f"instances must be >= 1; got {self.instances}")
        if self.instances is not None and self.kind == "gpu":
            problems.append("--instances N makes KIND_CPU instances; drop it or use kind cpu")
        for name in ("max_batch_size", "preferred_batch", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1; got {value}")
        if self.queue_delay_us < 0:
            problems.append(f"queue_delay_us must be >= 0; got {self.queue_delay_us}")
        if self.steps < 1:
            problems.append(f"steps must be >= 1; got {self.steps}")
        if not self.model_name or "/" in self.model_name:
            problems.append(f"model_name {self.model_name!r} must be a plain folder name")
        if problems:
            raise RepoError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepoConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def triton_repo_from_engine(engine_dir: str | Path, repo: str | Path, **options: Any) -> Path:
    """Write a Triton model repository serving `engine_dir`; options are RepoConfig fields,
    plus force=True to replace an existing model folder. Returns the model folder."""
    from ptdit_runtime import EngineFolder

    force = bool(options.pop("force", False))
    unknown = set(options) - {f.name for f in fields(RepoConfig)}
    if unknown:
        raise RepoError(f"unknown option(s) {sorted(unknown)}; known: {[f.name for f in fields(RepoConfig)]}")
    config = RepoConfig(**options)
    engine_dir = Path(engine_dir).resolve()
    folder = EngineFolder(engine_dir)  # MissingComponent (a FileNotFoundError) names the fix
    missing = folder.missing()
    if missing:
        raise RepoError(
            f"{engine_dir} has no {' and no '.join(missing)}; a served model reads prompts and returns "
            "pictures, so build the full folder with `ptdit-export build`"
        )
    config = _resolve(config, folder)
    # 1. the model folder
    model_dir = Path(repo) / config.model_name
    if model_dir.exists():
        if not force:
            raise RepoError(f"{model_dir} exists; pass --force to replace it or pick another --out")
        shutil.rmtree(model_dir)
    version = model_dir / "1"
    version.mkdir(parents=True)
    # 2. model.py and the engine folder beside it
    shutil.copyfile(TEMPLATE, version / "model.py")
    if config.link:
        (version / "engine").symlink_to(engine_dir, target_is_directory=True)
    else:
        shutil.copytree(engine_dir, version / "engine", ignore=shutil.ignore_patterns(".lock"))
    # 3. config.pbtxt and the settings it came from
    video = folder.default_size()[2] > 1
    (model_dir / "config.pbtxt").write_text(config_pbtxt(config, video))
    (model_dir / "serving.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    log.info("wrote model %s (max batch %d) to %s", config.model_name, config.max_batch_size, model_dir)
    return model_dir


def _resolve(config: RepoConfig, folder) -> RepoConfig:
    """Fill max batch, preferred batch and kind from the engine folder."""
    lim = folder.limits
    per_prompt = 2 if config.guidance != 1.0 else 1
    profile_max = lim.batch.max // per_prompt if lim.batch else 1
    profile_opt = lim.batch.opt // per_prompt if lim.batch else 1
    if profile_max < 1:
        raise RepoError(
            f"the engine takes at most batch {lim.batch.max}, but guidance {config.guidance} needs "
            f"{per_prompt} per prompt; rebuild with a larger --max batch or serve with guidance 1"
        )
    max_batch = config.max_batch_size or profile_max
    if max_batch > profile_max:
        log.info(
            "max batch %d > the profile's %d prompts: the runtime runs it in chunks", max_batch, profile_max
        )
    preferred = min(config.preferred_batch or max(profile_opt, 1), max_batch)
    kind = config.kind
    if config.instances is not None:
        kind = "cpu"
    elif kind == "auto":
        kind = "gpu" if (folder.transformer_dir / "engine.plan").is_file() else "cpu"
    return replace(config, max_batch_size=max_batch, preferred_batch=preferred, kind=kind)


def _tensor(name: str, dtype: str, dims: list[int], optional: bool = False) -> str:
    opt = "\n    optional: true" if optional else ""
    return f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: {dims}{opt}\n  }}'


def config_pbtxt(config: RepoConfig, video: bool = False) -> str:
    """Triton's model configuration (protobuf text) for a resolved RepoConfig."""
    inputs = [
        # prompt is optional to Triton so that a request without one reaches the runtime's check
        _tensor("prompt", "TYPE_STRING", [1], optional=True),
        _tensor("negative_prompt", "TYPE_STRING", [1], optional=True),
        _tensor("seed", "TYPE_INT64", [1], optional=True),
        _tensor("steps", "TYPE_INT32", [1], optional=True),
        _tensor("guidance", "TYPE_FP32", [1], optional=True),
        _tensor("height", "TYPE_INT32", [1], optional=True),
        _tensor("width", "TYPE_INT32", [1], optional=True),
    ]
    outputs = [_tensor("image", "TYPE_UINT8", [-1, -1, -1, 3] if video else [-1, -1, 3])]
    if config.png and not video:
        outputs.append(_tensor("png", "TYPE_STRING", [1]))
    if config.kind == "gpu":
        instances = "instance_group [\n  {\n    count: 1\n    kind: KIND_GPU\n  }\n]"  # one on each GPU
    else:
        instances = f"instance_group [\n  {{\n    count: {config.instances or 1}\n    kind: KIND_CPU\n  }}\n]"
    batching = ""
    if config.batching:
        # a preferred size of 1 would make the batcher dispatch single requests at once
        preferred = (
            f"  preferred_batch_size: [{config.preferred_batch}]\n" if config.preferred_batch > 1 else ""
        )
        batching = (
            f"dynamic_batching {{\n{preferred}  max_queue_delay_microseconds: {config.queue_delay_us}\n}}\n"
        )
    params = {
        "engine_dir": "engine",
        "backend": config.backend,
        "threads": "" if config.threads is None else str(config.threads),
        "default_steps": str(config.steps),
        "default_guidance": repr(float(config.guidance)),
    }
    parameters = "\n".join(
        f'parameters {{\n  key: "{k}"\n  value: {{ string_value: "{v}" }}\n}}' for k, v in params.items()
    )
    sep = ",\n"
    return (
        f"# written by ptdit-export triton; settings in serving.json\n"
        f'name: "{config.model_name}"\n'
        f'backend: "python"\n'
        f"max_batch_size: {config.max_batch_size}\n"
        f"input [\n{sep.join(inputs)}\n]\n"
        f"output [\n{sep.join(outputs)}\n]\n"
        f"{batching}"
        f"{instances}\n"
        f"{parameters}\n"
    )
