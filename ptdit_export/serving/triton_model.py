"""Triton Python-backend model for PT-DiT, written as `<model>/1/model.py` by ptdit-export triton.

Each instance loads one ptdit_runtime.Pipeline from the engine folder beside this file. A batch
of requests is read row by row (every input has a leading batch axis); rows are checked by the
runtime, bad ones answered with its message, and the good ones grouped by (steps, guidance,
height, width) so that each group is one Pipeline call. Outputs: `image` uint8 [H, W, 3] per row
([F, H, W, 3] for video) and, when asked for, `png` (the encoded picture). Requests answered
with an error are counted in the metric ptdit_request_failure{reason="invalid"|"failed"}.
"""

from __future__ import annotations

import io
import json
import logging
import os
import site
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

log = logging.getLogger("ptdit_runtime.triton")
INPUTS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "height", "width")


def _caller_site_packages() -> None:
    """`ptdit-export serve` names the caller's sys.path in PTDIT_SITE_PATH (the stub's embedded
    Python ignores PYTHONPATH); put it first, .pth files included. Unset in a container."""
    before = list(sys.path)
    for path in os.environ.get("PTDIT_SITE_PATH", "").split(os.pathsep):
        if path:
            site.addsitedir(path)
    sys.path[:] = [p for p in sys.path if p not in before] + before


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        _caller_site_packages()
        from ptdit_runtime import Pipeline

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        engine = Path(args["model_repository"]) / args["model_version"] / params.get("engine_dir", "engine")
        gpu = args.get("model_instance_kind") == "GPU"
        threads = params.get("threads") or None
        self.pipe = Pipeline.from_dir(
            engine,
            backend=params.get("backend", "auto"),
            provider="cuda" if gpu else "cpu",
            device_id=int(args.get("model_instance_device_id", 0)) if gpu else 0,
            threads=int(threads) if threads else None,
        )
        height, width, _ = self.pipe.folder.default_size()
        self.defaults = {
            "negative_prompt": "",
            "seed": 0,
            "steps": int(params.get("default_steps", 30)),
            "guidance": float(params.get("default_guidance", 4.0)),
            "height": height,
            "width": width,
        }
        self.outputs = {o["name"] for o in config["output"]}
        # Triton 2.51 counts error responses of Python models as successes; count them here
        family = pb_utils.MetricFamily(
            name="ptdit_request_failure",
            description="Requests answered with an error: invalid (the runtime's check) or failed (generation)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        labels = {"model": args["model_name"], "version": args["model_version"]}
        self.family = family  # the metrics live only as long as their family
        self.failures = {r: family.Metric(labels={**labels, "reason": r}) for r in ("invalid", "failed")}
        log.info("%s: loaded %s on %s", args["model_instance_name"], engine, "GPU" if gpu else "CPU")

    # ------------------------------------------------------------------ requests
    def _rows(self, request) -> list[dict]:
        """One dict per batch row of a request, defaults filled in (values as Python types)."""
        columns, batch = {}, None
        for name in INPUTS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                continue
            values = tensor.as_numpy().reshape(tensor.as_numpy().shape[0], -1)[:, 0]  # [B, 1] -> [B]
            columns[name] = [v.decode("utf-8") if isinstance(v, bytes) else v.item() for v in values]
            batch = len(values)
        rows = []
        for i in range(batch or 1):
            row = {k: (columns[k][i] if k in columns else v) for k, v in self.defaults.items()}
            row["prompt"] = columns["prompt"][i] if "prompt" in columns else None
            rows.append(row)
        return rows

    def _check(self, row: dict) -> None:
        """The runtime's own check (ValueError with its message); an empty prompt is no prompt."""
        self.pipe.check(
            row["prompt"] or None,
            row["negative_prompt"],
            steps=row["steps"],
            guidance=row["guidance"],
            seed=row["seed"],
            height=row["height"],
            width=row["width"],
        )

    def execute(self, requests: list) -> list:
        # 1. read and check every row; a request with a bad row is answered with the error
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, int, dict]]] = {}
        for r, request in enumerate(requests):
            try:
                rows = self._rows(request)
                for row in rows:
                    self._check(row)
            except Exception as err:  # noqa: BLE001 - every failure becomes this request's error
                responses[r] = pb_utils.InferenceResponse(error=_invalid(str(err)))
                self.failures["invalid"].increment(1)
                continue
            for i, row in enumerate(rows):
                key = (row["steps"], row["guidance"], row["height"], row["width"])
                groups.setdefault(key, []).append((r, i, row))

        # 2. one Pipeline call per (steps, guidance, height, width)
        images: dict[tuple[int, int], np.ndarray] = {}
        for (steps, guidance, height, width), members in groups.items():
            alive = [m for m in members if responses[m[0]] is None]
            if not alive:
                continue
            try:
                out = self.pipe(
                    [row["prompt"] for _, _, row in alive],
                    [row["negative_prompt"] for _, _, row in alive],
                    steps=steps,
                    guidance=guidance,
                    seed=[row["seed"] for _, _, row in alive],
                    height=height,
                    width=width,
                )
            except Exception as err:  # noqa: BLE001 - the server keeps serving
                log.exception("generation failed")
                for r in {m[0] for m in alive}:
                    responses[r] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err)))
                    self.failures["failed"].increment(1)
                continue
            for (r, i, _), image in zip(alive, out.images):
                images[r, i] = image

        # 3. per request: image [B, H, W, 3] (+ png [B, 1]) in its rows' order
        for r, request in enumerate(requests):
            if responses[r] is not None:
                continue
            rows = sorted((i, im) for (rr, i), im in images.items() if rr == r)
            stack = np.stack([im for _, im in rows])
            tensors = [pb_utils.Tensor("image", stack)]
            if "png" in self.outputs and "png" in request.requested_output_names():
                tensors.append(
                    pb_utils.Tensor("png", np.array([[_png(im)] for im in stack], dtype=np.object_))
                )
            responses[r] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self) -> None:
        self.pipe.close()


def _invalid(message: str):
    """A client error (HTTP 400 / INVALID_ARGUMENT) where the backend knows error codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
