"""Serving on a real tritonserver: the repository, answers equal to the in-process Pipeline,
runtime errors as Triton errors, PNG, the CLI client and the sample, a killed backend process.

One `ptdit-export serve` for the module (started in conftest, stopped with Ctrl-C at the end).
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import run_cli

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter over the series whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} ([0-9.e+]+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.fixture(scope="module")
def pipe(demo_engine):
    from ptdit_runtime import Pipeline

    pipeline = Pipeline.from_dir(demo_engine, backend="onnxruntime", provider="cpu", threads=1)
    yield pipeline
    pipeline.close()


# ---------------------------------------------------------------------- repository (no server)
def test_repository_follows_the_engine_profile(demo_engine, tmp_path):
    from ptdit_export.serving import RepoConfig, triton_repo_from_engine
    from ptdit_export.serving.repository import RepoError

    rnd = random.Random(os.getpid())
    instances, delay = rnd.randint(1, 4), rnd.randint(0, 50_000)
    model = triton_repo_from_engine(demo_engine, tmp_path, instances=instances, queue_delay_us=delay)
    text = (model / "config.pbtxt").read_text()
    batch = json.loads((demo_engine / "transformer" / "export.json").read_text())["profiles"]["batch"]
    assert f"max_batch_size: {batch['max'] // 2}\n" in text  # CFG: two rows per prompt
    preferred = batch["opt"] // 2
    assert (f"preferred_batch_size: [{preferred}]" in text) == (preferred > 1)  # 1 is no preference
    assert f"max_queue_delay_microseconds: {delay}\n" in text
    assert f"count: {instances}\n    kind: KIND_CPU" in text
    for name, dtype in (("prompt", "TYPE_STRING"), ("seed", "TYPE_INT64"), ("steps", "TYPE_INT32"),
                        ("guidance", "TYPE_FP32"), ("height", "TYPE_INT32"), ("width", "TYPE_INT32")):  # fmt: skip
        assert f'name: "{name}"\n    data_type: {dtype}' in text
    assert 'name: "image"\n    data_type: TYPE_UINT8\n    dims: [-1, -1, 3]' in text
    assert (model / "1" / "model.py").read_bytes() == Path(triton_model_path()).read_bytes()
    assert (model / "1" / "engine" / "model_index.json").is_file()
    assert RepoConfig.from_dict(json.loads((model / "serving.json").read_text())).instances == instances

    with pytest.raises(RepoError, match="--force"):
        triton_repo_from_engine(demo_engine, tmp_path)
    gpu = triton_repo_from_engine(demo_engine, tmp_path, kind="gpu", batching=False, force=True, png=False)
    text = (gpu / "config.pbtxt").read_text()
    assert "kind: KIND_GPU" in text and "dynamic_batching" not in text and '"png"' not in text
    with pytest.raises(RepoError, match="KIND_CPU"):
        triton_repo_from_engine(demo_engine, tmp_path, kind="gpu", instances=2, force=True)


def test_build_writes_the_repository_beside_the_folder(demo_engine, tmp_path):
    """`build ... --triton REPO` on an unchanged folder: a cache hit, then the repository."""
    repo = tmp_path / "repo"
    result = run_cli("build", "--precision", "fp16", "--out", str(demo_engine), "--triton", str(repo))
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout and f"{repo}: Triton model repository" in result.stdout
    text = (repo / "ptdit" / "config.pbtxt").read_text()
    assert 'backend: "python"' in text and "dynamic_batching" in text
    assert (repo / "ptdit" / "1" / "engine" / "manifest.json").read_bytes() == (
        demo_engine / "manifest.json"
    ).read_bytes()


def triton_model_path() -> str:
    from ptdit_export.serving.repository import TEMPLATE

    return str(TEMPLATE)


def test_cli_errors_name_the_fix(tmp_path):
    result = run_cli("triton", str(tmp_path / "missing"), "--out", str(tmp_path / "repo"))
    assert (
        result.returncode == 1
        and "Error: engine folder" in result.stderr
        and "ptdit-export build" in result.stderr
    )
    result = run_cli("serve", "--tritonserver", str(tmp_path / "nothing"), str(tmp_path))
    assert result.returncode == 1 and "is not an executable tritonserver" in result.stderr


# ---------------------------------------------------------------------- served answers
def test_batched_answers_equal_the_pipeline(served, pipe):
    """Concurrent requests with random prompts, seeds and steps (so one dynamic batch mixes
    step counts), over HTTP and gRPC: each answer is the in-process Pipeline's picture."""
    from ptdit_export.serving import generate

    rnd = random.Random(os.getpid() + 1)
    words = ["red", "blue", "green", "circle", "square", "small", "large", "on", "a", "background"]
    jobs = [
        dict(prompt=" ".join(rnd.choices(words, k=rnd.randint(2, 6))), seed=rnd.randint(0, 2**31),
             steps=rnd.randint(2, 4), guidance=rnd.choice([1.0, 2.5, 4.0]), protocol=rnd.choice(["http", "grpc"]))
        for _ in range(6)
    ]  # fmt: skip
    before = metric(served.metrics(), "nv_inference_exec_count", model="ptdit")

    def ask(job):
        job = dict(job)
        url = served.grpc_url if job["protocol"] == "grpc" else served.http_url
        return generate(url, job.pop("prompt"), timeout=300, **job)

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(ask, jobs))
    executions = metric(served.metrics(), "nv_inference_exec_count", model="ptdit") - before
    for job, image in zip(jobs, answers):
        expected = pipe(job["prompt"], steps=job["steps"], guidance=job["guidance"], seed=job["seed"]).images[
            0
        ]
        assert image.shape == expected.shape and image.dtype == np.uint8
        # batch composition may move a float rounding by one level; never more
        assert np.abs(image.astype(int) - expected).max() <= 1, job
    assert executions < len(jobs), f"{executions} executions for {len(jobs)} requests: nothing was batched"


def test_bad_requests_get_the_runtime_message(served, pipe):
    """No prompt, a size outside the profile, steps <= 0: Triton errors carrying the runtime's
    own message; the server goes on serving and its metrics count the failures."""
    from ptdit_export.serving import ServingError, generate

    height = pipe.folder.default_size()[0]
    bad = [
        dict(prompt=None, seed=3),
        dict(prompt="a red circle", height=height * 2),
        dict(prompt="x", steps=0),
    ]
    before = metric(served.metrics(), "ptdit_request_failure", model="ptdit", reason="invalid")
    for request in bad:
        with pytest.raises(ValueError) as expected:  # the runtime's check, in process
            pipe.check(request["prompt"], steps=request.get("steps", 3), height=request.get("height"))
        with pytest.raises(ServingError) as answered:
            generate(served.http_url, request.pop("prompt"), timeout=60, **request)
        assert str(expected.value) in str(answered.value)
    deadline = time.monotonic() + 15  # Triton refreshes its counters every couple of seconds
    while metric(served.metrics(), "ptdit_request_failure", model="ptdit", reason="invalid") - before < len(
        bad
    ):
        assert time.monotonic() < deadline, "the metrics did not count the failed requests"
        time.sleep(0.5)
    assert metric(served.metrics(), "ptdit_request_failure", model="ptdit", reason="invalid") - before == len(
        bad
    )
    assert generate(served.grpc_url, "a blue square", protocol="grpc", steps=2, timeout=300).dtype == np.uint8


def test_png_cli_client_and_sample(served, tmp_path):
    from PIL import Image

    from ptdit_export.serving import generate

    image = generate(served.http_url, "a green circle", seed=5, steps=2, timeout=300)
    png = generate(served.http_url, "a green circle", seed=5, steps=2, output="png", timeout=300)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), image)

    out = tmp_path / "cli.png"
    result = run_cli("client", "a green circle", "--url", served.http_url, "--seed", "5", "--steps", "2",
                     "-o", str(out), timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(out)), image)

    sample = tmp_path / "sample.png"
    cmd = [sys.executable, str(ROOT / "samples" / "triton_client.py"), "a green circle", "--url", served.http_url,
           "--seed", "5", "--steps", "2", "-o", str(sample)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(sample)), image)

    result = run_cli("client", "x", "--url", served.http_url, "--steps", "0", "-o", str(tmp_path / "no.png"))
    assert result.returncode == 1 and "steps must be a positive integer" in result.stderr


def test_killed_backend_process_is_reloaded(served):
    """Kill the model instance's stub: requests fail fast (never hang), `serve` restarts the
    server, and answers come back."""
    from ptdit_export.serving import ServingError, generate
    from ptdit_export.serving.server import TritonServer

    probe = TritonServer.__new__(TritonServer)
    probe.process = type("P", (), {"pid": served.server_pid})()
    stubs = probe.stubs()
    assert stubs, "no backend stub process under the server"
    os.kill(next(iter(stubs)), signal.SIGKILL)
    errors, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            image = generate(served.http_url, "a red circle", steps=2, timeout=60)
            break
        except ServingError as err:
            errors.append(str(err))
            assert time.monotonic() - start < 61
            time.sleep(1)
    else:
        pytest.fail(f"no answer 180 s after killing the backend; errors: {errors[-3:]}")
    assert image.dtype == np.uint8
    assert "restarted tritonserver" in served.output()
