"""Finding and running a real `tritonserver` on a model repository.

The binary comes from, in order: an explicit path, `tritonserver` on PATH (NVIDIA's container
has it at /opt/tritonserver/bin), or the `nvidia-pytriton` wheel, which ships the server, the
Python backend and a stub per Python version. For the wheel, the backend and the stub for the
running Python are copied into a small cache folder passed as --backend-directory, the wheel's
libraries go on LD_LIBRARY_PATH and this interpreter's sys.path in PTDIT_SITE_PATH, so the stub
imports the same ptdit_runtime and ONNX Runtime as the caller.

The wheel's stubs are built with a pybind11 that predates NumPy 2: under NumPy 2 every tensor
of more than one element arrives with its first byte repeated, and BYTES inputs crash the stub.
So `install_server_kit` pip-installs the wheel and NumPy 1.26 with --no-deps into a folder of
their own; the server runs with that folder as its working directory, which the stub's embedded
Python puts first on its path. The project's environment keeps NumPy 2.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PYTRITON = "nvidia-pytriton==0.7.0"  # tritonserver 2.51 with the Python backend and its stubs
STUB_NUMPY = "numpy==1.26.4"  # the wheel's stubs are built for NumPy 1.x (see docs/serving.md)
INSTALL_HINT = (
    "pass --tritonserver PATH, put tritonserver on PATH (NVIDIA's Triton container), or run "
    "`ptdit-export serve --install-server` (see docs/serving.md)"
)


class ServerNotFound(FileNotFoundError):
    """No tritonserver binary could be found."""


class ServerFailed(RuntimeError):
    """The server exited or did not become ready in time."""


@dataclass(frozen=True)
class ServerBinary:
    path: Path
    backend_dir: Path | None = None  # --backend-directory (None: the server's default)
    env: dict[str, str] = field(default_factory=dict)  # added to the server's environment
    source: str = "path"  # "explicit", "path", "server kit" or "nvidia-pytriton"
    cwd: Path | None = None  # the server's working folder: the stub imports NumPy 1.x from it


def kit_dir() -> Path:
    """Where `install_server_kit` puts the server wheel and the stub's NumPy 1.x."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptdit-export"
    return Path(os.environ.get("PTDIT_TRITON_KIT") or cache / f"triton-kit-{PYTRITON.split('==')[1]}")


def install_server_kit(target: str | Path | None = None, timeout: float = 900.0) -> Path:
    """pip-install the server wheel and NumPy 1.x, without dependencies, into a folder of their
    own (`kit_dir()`), away from the project's environment and its NumPy 2."""
    target = Path(target) if target else kit_dir()
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(tmp),
        PYTRITON,
        STUB_NUMPY,
    ]
    log.info("installing the Triton server kit: %s", " ".join(cmd))
    try:
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True, text=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        detail = getattr(err, "stderr", "") or ""
        raise ServerNotFound(f"could not install the server kit ({err}); {detail.strip()[-400:]}") from None
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def find_tritonserver(explicit: str | Path | None = None) -> ServerBinary:
    """The server to run: `explicit`, else tritonserver on PATH, else the nvidia-pytriton wheel's
    (from the server kit, else from this environment)."""
    env = {"PTDIT_SITE_PATH": _python_path()}
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerNotFound(f"{path} is not an executable tritonserver; {INSTALL_HINT}")
        return ServerBinary(path.resolve(), None, env, "explicit")
    on_path = shutil.which("tritonserver")
    if on_path:
        return ServerBinary(Path(on_path), None, env, "path")
    kit = kit_dir()
    if (kit / "pytriton" / "tritonserver" / "bin" / "tritonserver").is_file():
        return _wheel_server(kit / "pytriton", kit, env, "server kit")
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise ServerNotFound(f"no tritonserver found; {INSTALL_HINT}")
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2 and not (kit / "numpy").is_dir():
        raise ServerNotFound(
            f"nvidia-pytriton's Python backend stub needs NumPy 1.x and this environment has NumPy "
            f"{numpy.__version__}; run `ptdit-export serve --install-server` (installs both into {kit})"
        )
    return _wheel_server(
        Path(spec.origin).parent, kit if (kit / "numpy").is_dir() else None, env, "nvidia-pytriton"
    )


def _wheel_server(package: Path, stub_site: Path | None, env: dict[str, str], source: str) -> ServerBinary:
    root = package / "tritonserver"
    backends = _wheel_backends(root)
    lib_path = [str(package.parent / "nvidia_pytriton.libs")]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):  # the stub then embeds this very Python
        lib_path.insert(0, str(sysconfig.get_config_var("LIBDIR")))
    if os.environ.get("LD_LIBRARY_PATH"):
        lib_path.append(os.environ["LD_LIBRARY_PATH"])
    env = {**env, "LD_LIBRARY_PATH": os.pathsep.join(lib_path)}
    return ServerBinary(root / "bin" / "tritonserver", backends, env, source, stub_site)


def _python_path() -> str:
    extra = [p for p in sys.path if p and Path(p).is_dir()]
    return os.pathsep.join(dict.fromkeys(extra))


def _wheel_backends(root: Path) -> Path:
    """A backend directory holding the wheel's Python backend and the stub for this Python."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerNotFound(
            f"nvidia-pytriton has no Python backend stub for Python {version} (it ships 3.8-3.13); "
            f"run with one of those, or {INSTALL_HINT}"
        )
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptdit-export"
    target = cache / f"triton-backends-py{version}" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in (*sorted((root / "backends" / "python").glob("*.*")), stub):
        dst = target / src.name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            tmp = dst.with_suffix(f".tmp{os.getpid()}")
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
    return target.parent


def free_ports(count: int = 3, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free TCP ports on `host`."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class TritonServer:
    """A tritonserver process on a model repository; a context manager that stops it by pid.

    Ports default to free ones on `host` (127.0.0.1). Output goes to `log_path` (default: a
    temporary file; `log_tail()` reads it)."""

    def __init__(
        self,
        repo: str | Path,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: ServerBinary | str | Path | None = None,
        log_path: str | Path | None = None,
        verbose: int = 0,
        extra_args: tuple[str, ...] = (),
    ):
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise FileNotFoundError(
                f"model repository {repo} does not exist; write one with `ptdit-export triton`"
            )
        ports = free_ports(3, host)
        self.http_port, self.grpc_port, self.metrics_port = (
            http_port or ports[0],
            grpc_port or ports[1],
            metrics_port or ports[2],
        )
        self.host = host
        self.binary = binary if isinstance(binary, ServerBinary) else find_tritonserver(binary)
        self.log_path = (
            Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        )
        self.verbose, self.extra_args = verbose, tuple(extra_args)
        self.process: subprocess.Popen | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def http_url(self) -> str:
        return f"{_client_host(self.host)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{_client_host(self.host)}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_client_host(self.host)}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary.path),
            f"--model-repository={self.repo}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=10",
            f"--log-verbose={self.verbose}",
        ]
        if self.binary.backend_dir is not None:
            cmd.append(f"--backend-directory={self.binary.backend_dir}")
        return cmd + list(self.extra_args)

    # ------------------------------------------------------------------ lifetime
    def start(self, timeout: float = 120.0) -> TritonServer:
        """Start the server and wait until it and every model are ready (ServerFailed if not)."""
        env = dict(os.environ)
        for key, value in self.binary.env.items():
            env[key] = value
        log.info("starting %s", " ".join(self.command()))
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.binary.cwd,
                start_new_session=True,
            )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerFailed(
                    f"tritonserver exited with code {self.process.returncode} before it was ready; "
                    f"its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.25)
        raise ServerFailed(
            f"tritonserver was not ready after {timeout:.0f} s; its log ({self.log_path}) ends:\n{self.log_tail()}"
        )

    def ready(self, model: str | None = None) -> bool:
        """Server readiness (all models loaded), or one model's with `model`."""
        path = f"/v2/models/{model}/ready" if model else "/v2/health/ready"
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    # ------------------------------------------------------------------ faults
    def stubs(self) -> dict[int, str]:
        """The server's Python-backend stub processes: pid -> state letter (Z: dead, unreaped)."""
        found = {}
        if self.process is None:
            return found
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if int(rest[1]) == self.process.pid and name.startswith("triton_python"):
                found[int(entry.name)] = rest[0]
        return found

    def heal(self, timeout: float = 300.0) -> bool:
        """Restart the server when a backend stub has died. Triton 2.51 neither restarts the stub
        nor marks the model unready: it answers every request "Stub process ... is not healthy",
        and unloading the model hangs on the dead stub. Returns whether it restarted."""
        if "Z" not in self.stubs().values():
            return False
        log.warning("a backend stub of tritonserver %d died; restarting the server", self.process.pid)
        self.stop(timeout=0)  # SIGINT, then at once SIGKILL to the group: the dead stub cannot unload
        self.start(timeout)
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT (Triton unloads models and exits), then SIGKILL to its process group after
        `timeout`. Returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if timeout:
                    log.warning("tritonserver %d did not stop in %.0f s; killing it", proc.pid, timeout)
                os.killpg(proc.pid, signal.SIGKILL)  # the server and its backend stubs
                proc.wait(10)
        try:  # stubs left behind by a killed server
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return proc.returncode

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host
