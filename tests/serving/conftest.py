"""Fixtures of the serving tests: the demo engine folder (built once), a server binary, one
model repository and one `ptdit-export serve` process for the module, on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from ptdit_export.cli import main; main()"]


def run_cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def demo_engine(tmp_path_factory) -> Path:
    """`ptdit-export build --precision fp16` (~40 s); PTDIT_TEST_DEMO_ENGINE reuses a folder."""
    if os.environ.get("PTDIT_TEST_DEMO_ENGINE"):
        return Path(os.environ["PTDIT_TEST_DEMO_ENGINE"])
    out = tmp_path_factory.mktemp("serving") / "demo"
    result = run_cli("build", "--precision", "fp16", "--out", str(out), timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def server_binary():
    """A tritonserver: PATH, the server kit, or the kit installed now (pip, --no-deps)."""
    pytest.importorskip(
        "tritonclient.http", reason="tritonclient is in the test extra: pip install -e '.[test]'"
    )
    from ptdit_export.serving.server import ServerNotFound, find_tritonserver, install_server_kit

    try:
        return find_tritonserver()
    except ServerNotFound:
        pass
    try:
        install_server_kit(timeout=900)
        return find_tritonserver()
    except ServerNotFound as err:
        pytest.skip(f"no tritonserver binary could be found or installed: {err}")


class ServeProcess:
    """`ptdit-export serve` in the background; the tritonserver pid it prints is its child."""

    def __init__(self, repo: Path, ports: list[int], log: Path):
        self.http_url, self.grpc_url = f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"
        self.metrics_url = f"http://127.0.0.1:{ports[2]}/metrics"
        self.out = open(log.with_suffix(".out"), "w+")  # noqa: SIM115 - closed in stop()
        cmd = [*CLI, "serve", str(repo), "--log", str(log)]
        cmd += ["--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
        # started with SIGINT ignored, as a shell starts a script's background job: `serve` must
        # still stop on Ctrl-C (the teardown's SIGINT), not only when run from a terminal
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        self.server_pid = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = Path(self.out.name).read_text()
            if "ready: HTTP" in text:
                self.server_pid = int(text.split("tritonserver pid ")[1].split()[0])
                return
            time.sleep(0.5)
        self.stop()
        raise AssertionError(
            f"ptdit-export serve did not get ready:\n{Path(self.out.name).read_text()[-3000:]}"
        )

    def output(self) -> str:
        return Path(self.out.name).read_text()

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return response.read().decode()

    def stop(self, timeout: float = 60) -> int | None:
        """Ctrl-C (SIGINT) to the CLI; SIGKILL to it and its server by pid if that takes too long."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.server_pid:
            try:
                os.killpg(self.server_pid, signal.SIGKILL)  # only if the CLI left it behind
            except (ProcessLookupError, PermissionError):
                pass
        self.out.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def repo(demo_engine, tmp_path_factory) -> Path:
    """A repository of one KIND_CPU instance; a long queue delay so that concurrent requests
    land in one batch."""
    out = tmp_path_factory.mktemp("repo")
    result = run_cli("triton", str(demo_engine), "--out", str(out), "--instances", "1", "--threads", "1",
                     "--queue-delay-us", "300000", "--steps", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def served(repo, server_binary, tmp_path_factory):
    from ptdit_export.serving import free_ports

    server = ServeProcess(repo, free_ports(3), tmp_path_factory.mktemp("log") / "server.log")
    yield server
    code = server.stop()
    assert code == 0, f"ptdit-export serve exited with {code} after Ctrl-C:\n{server.output()[-2000:]}"
