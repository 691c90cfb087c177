"""A client for the served model (tritonclient over HTTP or gRPC).

image = generate("localhost:8000", "a red circle", seed=3)         # uint8 [H, W, 3]
png = generate("localhost:8001", "a red circle", protocol="grpc", output="png")  # bytes
"""

from __future__ import annotations

from typing import Any

import numpy as np

PROTOCOLS = ("http", "grpc")
INT_INPUTS = {"seed": np.int64, "steps": np.int32, "height": np.int32, "width": np.int32}


class ServingError(ValueError):
    """The server answered with an error, or could not be reached in time."""


def _client_module(protocol: str):
    if protocol not in PROTOCOLS:
        raise ServingError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    try:
        if protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
    except ImportError as err:
        raise ServingError(
            f"the client needs tritonclient ({err}); pip install 'tritonclient[http,grpc]' "
            "or pip install -e '.[serve]'"
        ) from None
    return module


def build_inputs(module, prompt: str | None, values: dict[str, Any]) -> list:
    """Triton inputs with a batch of one ([1, 1] each); None values are left out (server defaults)."""
    inputs = []

    def add(name: str, array: np.ndarray, dtype: str) -> None:
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)

    if prompt is not None:
        add("prompt", np.array([[prompt.encode()]], dtype=np.object_), "BYTES")
    if values.get("negative_prompt") is not None:
        add("negative_prompt", np.array([[values["negative_prompt"].encode()]], dtype=np.object_), "BYTES")
    for name, dtype in INT_INPUTS.items():
        if values.get(name) is not None:
            add(name, np.array([[values[name]]], dtype=dtype), "INT64" if dtype is np.int64 else "INT32")
    if values.get("guidance") is not None:
        add("guidance", np.array([[values["guidance"]]], dtype=np.float32), "FP32")
    return inputs


def generate(
    url: str,
    prompt: str | None,
    *,
    protocol: str = "http",
    model: str = "ptdit",
    output: str = "image",
    timeout: float = 300.0,
    negative_prompt: str | None = None,
    seed: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray | bytes:
    """One picture for `prompt`: uint8 [H, W, 3] ([F, H, W, 3] video), or PNG bytes with
    output="png". Every call is bounded by `timeout` seconds; errors raise ServingError."""
    if output not in ("image", "png"):
        raise ServingError(f"output {output!r} is not one of ('image', 'png')")
    module = _client_module(protocol)
    from tritonclient.utils import InferenceServerException

    values = dict(
        negative_prompt=negative_prompt, seed=seed, steps=steps, guidance=guidance, height=height, width=width
    )
    inputs = build_inputs(module, prompt, values)
    outputs = [module.InferRequestedOutput(output)]
    if protocol == "http":
        client = module.InferenceServerClient(url, connection_timeout=timeout, network_timeout=timeout)
        call = dict(outputs=outputs)
    else:
        client = module.InferenceServerClient(url)
        call = dict(outputs=outputs, client_timeout=timeout)
    try:
        result = client.infer(model, inputs, **call)
    except InferenceServerException as err:
        raise ServingError(f"{url}: {err.message() or err}") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # refused or closed connections, timeouts (gevent's are BaseException)
        raise ServingError(
            f"{url}: {type(err).__name__}: {err}; is the server running (ptdit-export serve)?"
        ) from None
    finally:
        client.close()  # an open connection would hold the server's shutdown for its exit timeout
    array = result.as_numpy(output)
    if array is None:
        raise ServingError(f"{url}: the answer has no {output!r} output")
    return bytes(array.reshape(-1)[0]) if output == "png" else array[0]
