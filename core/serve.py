"""Serving a checkpoint over HTTP with mlx-lm's OpenAI-compatible server, as a child process.

The child is ``mlx_lm.server`` itself, started through this module's ``__main__`` so that it
cannot outlive tunedeck: it watches its standard input and exits when the parent's end closes
(a quit, a crash, a SIGKILL alike). It binds 127.0.0.1 unless the caller allows another
address, and only loopback web pages may call it (mlx-lm allows any origin by default, which lets
every web page the user opens talk to the model).

A numbered checkpoint is served through a temporary adapter directory: ``mlx_lm.server`` reads
only ``adapters.safetensors``, so that name links to the checkpoint file beside a copy of the
run's ``adapter_config.json``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .adapters import CONFIG_FILE, FINAL_WEIGHTS, AdapterRef
from .errors import BadInput, WorkFailed

# The name mlx_lm.server maps to the model and adapter it was started with; any other name
# is taken as a path to load, without the adapter.
MODEL_NAME = "default_model"
DEFAULT_PORT = 8080
NO_AUTH_WARNING = ("warning: serving on {host}, beyond this machine: the server has no authentication, "
                   "so anyone who can reach {host}:{port} can use the model")


@dataclass
class ServeTarget:
    model_dir: Path
    adapter: Optional[AdapterRef]
    label: str                      # what is served, in the user's words


def serve_target(spec: str | Path, checkpoint: Optional[str] = None) -> ServeTarget:
    """RUN (with ``--checkpoint ITER|best|final``, default the latest) or a MODEL as it is."""
    from .checkpoints import run_or_model

    choice = run_or_model(spec, checkpoint)
    if choice.run is None:
        return ServeTarget(choice.model_dir, None, choice.model_dir.name)
    what = f"checkpoint {choice.checkpoint.iteration}" if choice.checkpoint else "final weights"
    return ServeTarget(choice.model_dir, choice.adapter, f"{choice.run.name} · {what}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    if not is_loopback(host) and not allow_remote:
        raise BadInput(f"{host}: not a loopback address; the server binds beyond this machine only "
                       "with an explicit --host")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _bind_problem(host: str, port: int) -> Optional[str]:
    """Why ``host:port`` cannot be listened on, or None when it can."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    return _bind_problem(host, port) is None


def _check_port(host: str, port: int) -> None:
    problem = _bind_problem(host, port)
    if problem:
        raise BadInput(f"--port {port}: cannot listen on {host}:{port} ({problem}); choose another port")


def loopback_origins(port: int) -> list[str]:
    return [f"http://{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")]


class ModelServer:
    """One ``mlx_lm.server`` child serving ``target``."""

    def __init__(self, target: ServeTarget, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 allow_remote: bool = False):
        check_host(host, allow_remote)
        self.target, self.host, self.port = target, host, port
        self.process: Optional[subprocess.Popen] = None
        self._scratch: Optional[Path] = None

    # -- what a client needs -----------------------------------------------------------------
    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.root_url}/v1"

    model_name = MODEL_NAME

    def curl_example(self) -> str:
        body = json.dumps({"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hello!"}]})
        return (f"curl {self.base_url}/chat/completions -H 'Content-Type: application/json' "
                f"-d '{body}'")

    # -- the child ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        command = [sys.executable, "-m", "tunedeck.core.serve", "--model", str(self.target.model_dir),
                   "--host", self.host, "--port", str(self.port),
                   "--allowed-origins", ",".join(loopback_origins(self.port))]
        adapter = self._adapter_dir()
        if adapter is not None:
            command += ["--adapter-path", str(adapter)]
        return command

    def _adapter_dir(self) -> Optional[Path]:
        ref = self.target.adapter
        if ref is None:
            return None
        if ref.weights.name == FINAL_WEIGHTS:
            return ref.directory
        self._scratch = Path(tempfile.mkdtemp(prefix="tunedeck-serve-"))
        shutil.copy(ref.directory / CONFIG_FILE, self._scratch / CONFIG_FILE)
        (self._scratch / FINAL_WEIGHTS).symlink_to(ref.weights.resolve())
        return self._scratch

    def start(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Start the child and return once ``/health`` answers; WorkFailed if the child dies first."""
        _check_port(self.host, self.port)
        log = tempfile.TemporaryFile(mode="w+")
        self._log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        # A session of its own: Ctrl-C in the terminal reaches tunedeck, which stops the child.
        process = self.process = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=log,
                                                  stderr=log, env=env, start_new_session=True)
        try:
            while not self._healthy():
                if self.process is not process:  # stop() was called from another thread
                    raise WorkFailed("the model server was stopped before it was ready")
                if process.poll() is not None:
                    raise WorkFailed(f"the model server exited before it was ready: {self.log_tail()}")
                if cancelled():
                    raise WorkFailed("the model server start was cancelled")
                time.sleep(0.1)  # another process: nothing to await but its socket
        except BaseException:
            self.stop()
            raise

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        log = getattr(self, "_log", None)
        if log is None:
            return ""
        log.flush()
        log.seek(0)
        tail = [line.strip() for line in log.read().splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(no output)"

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (closing its stdin is enough; signals if it does not go) and clean up."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _child_main(argv: list[str]) -> None:
    """In the child: exit when the parent's end of stdin closes, and run mlx_lm.server."""
    import threading

    def watch_parent() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    from mlx_lm.server import main

    sys.argv = ["mlx_lm.server", *argv]
    main()


if __name__ == "__main__":
    _child_main(sys.argv[1:])
