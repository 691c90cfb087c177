"""Ask a served PT-DiT model (ptdit-export triton + serve) for a picture, with tritonclient alone.

    python samples/triton_client.py --url localhost:8000 "a red circle on a blue background" -o circle.png

Every input but `prompt` is optional (the server fills in its defaults); `png` comes back as the
encoded file, `image` as uint8 [H, W, 3].
"""

from __future__ import annotations

import argparse

import numpy as np
import tritonclient.http as httpclient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--url", default="localhost:8000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("-o", "--out", default="served.png")
    args = parser.parse_args()

    inputs = []
    for name, value, dtype in (
        ("prompt", np.array([[args.prompt.encode()]], dtype=np.object_), "BYTES"),  # [batch 1, 1]
        ("seed", np.array([[args.seed]], dtype=np.int64), "INT64"),
        ("steps", np.array([[args.steps]], dtype=np.int32), "INT32"),
    ):
        tensor = httpclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    client = httpclient.InferenceServerClient(args.url, connection_timeout=60, network_timeout=300)
    result = client.infer("ptdit", inputs, outputs=[httpclient.InferRequestedOutput("png")])
    with open(args.out, "wb") as f:
        f.write(result.as_numpy("png")[0, 0])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
