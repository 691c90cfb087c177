"""The one small interface every backend implements.

An `Engine` runs one graph: `run(feeds) -> outputs`, NumPy arrays in and out, named as in
the engine folder contract. It declares its tensors (`inputs`, `outputs`: name, dtype,
shape with None for dynamic axes) and, where the backend has them, optimisation-profile
limits per input (`profile(name) -> (min, opt, max)` shapes). Callers pass float32/int64
arrays; `prepare_feeds` casts them to the graph's dtypes (float16, bfloat16, int32) so
callers never care. Outputs come back as float32 (or the graph's integer dtype).

`constant` names inputs that did not change since the previous call (the text embeddings
during a denoising loop); backends that keep device copies skip re-uploading them when the
very same array object is passed again. CPU backends ignore it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ptdit_runtime.engines.dtypes import bfloat16_bits, float32_from_bfloat16_bits


class EngineLoadError(ValueError):
    """A model file that exists but cannot be loaded or run (damaged, truncated, wrong format)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # "float32", "float16", "bfloat16", "int64", "int32", ...
    shape: tuple[int | None, ...]  # None: dynamic axis

    def accepts(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(d is None or d == s for d, s in zip(self.shape, shape))


class Engine(ABC):
    """A loaded graph. Subclasses set `backend`, `inputs`, `outputs` and implement `run`."""

    backend: str = "?"
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray], constant: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Run once; `feeds` maps every input name to an array."""

    def profile(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
        """(min, opt, max) shape of input `name` where the backend fixes one, else None."""
        return None

    def close(self) -> None:  # noqa: B027 - optional for backends holding nothing
        """Release device memory and sessions (the engine is unusable afterwards)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        def fmt(specs: dict[str, TensorSpec]) -> str:
            return ", ".join(
                f"{s.name}[{','.join('?' if d is None else str(d) for d in s.shape)}] {s.dtype}"
                for s in specs.values()
            )

        return f"{self.backend}: ({fmt(self.inputs)}) -> ({fmt(self.outputs)})"

    # ----------------------------------------------------------- helpers
    def prepare_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names and ranks, cast to the graph dtypes (bfloat16 as uint16 bit patterns)."""
        missing = sorted(set(self.inputs) - set(feeds))
        extra = sorted(set(feeds) - set(self.inputs))
        if missing or extra:
            raise ValueError(
                f"{self.backend} engine inputs are {sorted(self.inputs)}; "
                f"missing {missing}, unexpected {extra}"
            )
        out = {}
        for name, spec in self.inputs.items():
            arr = np.asarray(feeds[name])
            if not spec.accepts(arr.shape):
                raise ValueError(
                    f"input {name!r} has shape {arr.shape}; the engine takes "
                    f"{tuple('?' if d is None else d for d in spec.shape)} (re-export with other sizes "
                    "or dynamic axes)"
                )
            if spec.dtype == "bfloat16":
                arr = bfloat16_bits(arr)
            elif arr.dtype != spec.dtype:
                arr = arr.astype(spec.dtype)
            out[name] = np.ascontiguousarray(arr)
        return out

    def finish_output(self, name: str, arr: np.ndarray) -> np.ndarray:
        """float16 / bfloat16-bit outputs to float32."""
        dtype = self.outputs[name].dtype
        if dtype == "bfloat16":
            return float32_from_bfloat16_bits(arr)
        if dtype == "float16":
            return arr.astype(np.float32)
        return arr
