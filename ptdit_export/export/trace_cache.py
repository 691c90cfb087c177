"""A cache of weight-free traces: the same architecture and settings are traced once per machine.

The one-block trace (stitch.py), like the text encoder's, holds no weights: every parameter is a
graph input until the weights are bound. So a trace depends only on the configuration (block
count aside), the export settings, the library versions and this package's model and export
code, and it is stored under a key over exactly those, in $PTDIT_EXPORT_CACHE_DIR or ~/.cache/ptdit-export/traces (XDG_CACHE_HOME
respected). A different checkpoint, seed or number of blocks reuses it; any change of code or
version misses. PTDIT_EXPORT_TRACE_CACHE=0 turns it off. A file that does not load, or whose
inputs do not match the model's parameters, is ignored and traced again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
CODE = ("model", "export", "ops")  # this package's folders the graph's structure comes from


def cache_dir() -> Path | None:
    if os.environ.get("PTDIT_EXPORT_TRACE_CACHE", "1") == "0":
        return None
    given = os.environ.get("PTDIT_EXPORT_CACHE_DIR")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptdit-export" / "traces"


def trace_key(config: dict, settings: dict) -> str:
    """The one-block trace's key: the configuration without the block count, the settings."""
    return structure_key(
        "ptdit-one-block",
        {
            "config": config | {"num_layers": 1},
            "settings": {k: v for k, v in settings.items() if k != "trace"},
        },
    )


def structure_key(kind: str, facts: dict) -> str:
    """sha256 over what a weight-free graph's structure depends on: FACTS, the library versions
    and this package's model, export and op code."""
    from importlib import metadata

    import ptdit_export

    root = Path(ptdit_export.__file__).parent
    code = hashlib.sha256()
    for sub in CODE:
        for path in sorted((root / sub).rglob("*")):
            if path.suffix in (".py", ".json") and path.is_file():
                code.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    versions = {}  # read from the installed metadata: importing transformers alone takes seconds
    for package in ("torch", "onnx", "onnxscript", "onnx-ir", "transformers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    facts = {
        "kind": kind,
        **facts,
        "versions": versions,
        "ptdit_export": [ptdit_export.__version__, code.hexdigest()],
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load(key: str, parameters: dict[str, tuple[int, ...]]):
    """The cached one-block trace for KEY, or None (missing, unreadable or not matching)."""
    import onnx

    folder = cache_dir()
    path = folder / f"{key}.onnx" if folder else None
    if path is None or not path.is_file():
        return None
    try:
        proto = onnx.load_model_from_string(path.read_bytes())
        shapes = {
            i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
            for i in proto.graph.input
            if i.name in parameters
        }
        if not shapes or any(parameters[name] != shape for name, shape in shapes.items()):
            raise ValueError("its parameter inputs do not match the model")
    except Exception as err:  # a damaged cache entry must never stop an export
        log.warning("ignoring the cached trace %s (%s); tracing again", path, err)
        return None
    log.info("graph structure from the trace cache (%s)", path)
    return proto


def store(key: str, proto) -> None:
    """Keep PROTO (weight-free) under KEY; a cache that cannot be written is only logged."""
    from ptdit_export.export.artifacts import write_bytes

    folder = cache_dir()
    if folder is None:
        return
    try:
        write_bytes(folder / f"{key}.onnx", proto.SerializeToString())
    except OSError as err:
        log.warning("could not write the trace cache in %s (%s)", folder, err)
