"""Serving a checkpoint over HTTP with mlx-lm's own OpenAI-compatible server.

The server is ``mlx_lm.server`` itself: its ``main`` (the options, the model provider, the HTTP
handler) runs in the process that serves, exactly as when a user starts it by hand.
``tunedeck serve`` runs it in its own process (``serve_here``): one interpreter start and one
import of mlx-lm, as by hand. The app runs it in one child process (``ModelServer``), so that
loading the model and generating never compete with the interface for the interpreter; that
child is the server, and it exits when the app's end of its standard input closes (a quit, a
crash, a SIGKILL alike).

It binds 127.0.0.1 unless the caller allows another address, and only loopback web pages may
call it (mlx-lm allows any origin by default, which lets every web page the user opens talk to
the model).

A numbered checkpoint is served through a temporary adapter directory: ``mlx_lm.server`` reads
only ``adapters.safetensors``, so that name links to the checkpoint file beside a copy of the
run's ``adapter_config.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

from .adapters import CONFIG_FILE, FINAL_WEIGHTS, AdapterRef
from .errors import BadInput, WorkFailed

# The name mlx_lm.server maps to the model and adapter it was started with; any other name
# is taken as a path to load, without the adapter.
MODEL_NAME = "default_model"
DEFAULT_PORT = 8080
# A numbered checkpoint's adapter directory, in the temporary directory; the server that uses
# it holds a lock on its _IN_USE file for as long as it lives.
_ADAPTER_DIR_PREFIX = "tunedeck-serve-"
_IN_USE = ".in-use"


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


def _is_every_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def no_auth_warning(host: str, port: int) -> str:
    """The warning for a bind beyond the loopback, in words for ``host``."""
    where = f"{host} (every address of this machine)" if _is_every_address(host) else host
    return (f"warning: serving on {where}, beyond this machine: the server has no authentication, "
            f"so anyone who can reach this machine on port {port} can use the model")


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
        # As mlx_lm.server binds (http.server's allow_reuse_address): a server just stopped
        # leaves connections in TIME_WAIT, which do not keep it from listening again.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


class Address:
    """Where a server listens, and what a client needs to reach it."""

    model_name = MODEL_NAME

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, allow_remote: bool = False):
        check_host(host, allow_remote)
        self.host, self.port = host, port

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.root_url}/v1"

    def curl_example(self) -> str:
        body = json.dumps({"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hello!"}]})
        return (f"curl {self.base_url}/chat/completions -H 'Content-Type: application/json' "
                f"-d '{body}'")

    def health(self) -> Optional[int]:
        """The status ``/health`` answers with, or None while nothing listens."""
        try:
            with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None


@contextlib.contextmanager
def adapter_dir(target: ServeTarget) -> Iterator[Optional[Path]]:
    """The directory to give mlx_lm.server as ``--adapter-path`` (None without an adapter)."""
    ref = target.adapter
    if ref is None:
        yield None
        return
    if ref.weights.name == FINAL_WEIGHTS:
        yield ref.directory
        return
    _remove_abandoned_adapter_dirs()
    scratch = Path(tempfile.mkdtemp(prefix=_ADAPTER_DIR_PREFIX))
    try:
        with open(scratch / _IN_USE, "w") as in_use:
            fcntl.flock(in_use, fcntl.LOCK_EX)
            shutil.copy(ref.directory / CONFIG_FILE, scratch / CONFIG_FILE)
            (scratch / FINAL_WEIGHTS).symlink_to(ref.weights.resolve())
            yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _remove_abandoned_adapter_dirs() -> None:
    """Adapter directories of servers killed before they could remove theirs (SIGKILL, a power
    cut): their lock is free. One without a lock file is not tunedeck's to judge, and stays."""
    for leftover in Path(tempfile.gettempdir()).glob(f"{_ADAPTER_DIR_PREFIX}*"):
        try:
            with open(leftover / _IN_USE) as in_use:
                fcntl.flock(in_use, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # no lock file, or a live server holds it
            continue
        shutil.rmtree(leftover, ignore_errors=True)


def server_arguments(model_dir: Path, adapter: Optional[Path], address: Address) -> list[str]:
    """mlx_lm.server's command line for serving ``model_dir`` (+ ``adapter``) at ``address``."""
    arguments = ["--model", str(model_dir), "--host", address.host, "--port", str(address.port),
                 "--allowed-origins", ",".join(loopback_origins(address.port))]
    if adapter is not None:
        arguments += ["--adapter-path", str(adapter)]
    return arguments


def run_mlx_server(arguments: list[str], address: Address,
                   ready: Optional[Callable[[], None]] = None) -> None:
    """``mlx_lm.server`` with ``arguments``, in this (the main) thread, until Ctrl-C.

    Ctrl-C ends it the way it ends mlx_lm.server by hand: its HTTP server and its generation
    thread stop, and this returns. ``ready`` is called from another thread once ``/health``
    answers. WorkFailed when the model could not be loaded.
    """
    # The model is a local directory: nothing to ask the Hugging Face Hub (read at its import).
    os.environ["HF_HUB_OFFLINE"] = "1"
    if is_loopback(address.host):
        # Its start-up UserWarning (a Python warning with a source line, read as a fault) is about
        # exposing it; on the loopback nothing is exposed, and beyond it tunedeck warns itself.
        import warnings

        warnings.filterwarnings("ignore", message="mlx_lm.server is not recommended for production")
    from mlx_lm.server import main

    failed = threading.Event()
    threading.Thread(target=_announce, args=(address, ready, failed), daemon=True).start()
    sys.argv = ["mlx_lm.server", *arguments]
    main()
    if failed.is_set():
        raise WorkFailed("the model server could not load the model (mlx_lm.server's log above says why)")


def _announce(address: Address, ready: Optional[Callable[[], None]], failed: threading.Event) -> None:
    """Call ``ready`` once the server answers ``/health``; stop it if it answers that it failed."""
    while True:
        status = address.health()
        if status == 200:
            if ready is not None:
                ready()
            return
        if status is not None:  # 503: its generation thread died, which is the model's load
            failed.set()
            # Its Ctrl-C path is the one clean way out of mlx_lm.server (does nothing where
            # SIGINT is ignored; the server then stays up, saying unavailable).
            import _thread

            _thread.interrupt_main()
            return
        time.sleep(0.05)  # until mlx-lm's HTTP server binds: its socket is all there is to watch


def serve_here(target: ServeTarget, address: Address,
               ready: Optional[Callable[[], None]] = None) -> None:
    """Serve ``target`` from this process until Ctrl-C (see ``run_mlx_server``)."""
    _check_port(address.host, address.port)
    before = set(threading.enumerate())
    try:
        with adapter_dir(target) as adapter:
            run_mlx_server(server_arguments(target.model_dir, adapter, address), address, ready)
    except BaseException as exc:
        if any(t.is_alive() and not t.daemon for t in set(threading.enumerate()) - before):
            # mlx-lm's generation thread stops only on its HTTP server's own Ctrl-C path; ended
            # any other way (Ctrl-C before it listened, a port taken since it was checked), the
            # thread would keep this interpreter from ever exiting.
            message = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc}"
            print(f"tunedeck: {message}", file=sys.stderr, flush=True)
            os._exit(130 if isinstance(exc, KeyboardInterrupt) else 1)
        raise


class ModelServer(Address):
    """One child process that is ``mlx_lm.server``, serving ``target`` (the app's server)."""

    def __init__(self, target: ServeTarget, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 allow_remote: bool = False):
        super().__init__(host, port, allow_remote)
        self.target = target
        self.process: Optional[subprocess.Popen] = None
        self._adapter = contextlib.ExitStack()
        self._log: Optional[IO[str]] = None

    def command(self) -> list[str]:
        adapter = self._adapter.enter_context(adapter_dir(self.target))
        return [sys.executable, "-m", "tunedeck.core.serve",
                *server_arguments(self.target.model_dir, adapter, self)]

    def start(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Start the child and return once ``/health`` answers; WorkFailed if the child dies first."""
        _check_port(self.host, self.port)
        log = self._log = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # A session of its own: Ctrl-C in the terminal reaches the app, which stops the child.
        process = self.process = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=log,
                                                  stderr=log, env=env, start_new_session=True)
        try:
            while (status := self.health()) != 200:
                if self.process is not process:  # stop() was called from another thread
                    raise WorkFailed("the model server was stopped before it was ready")
                if process.poll() is not None or status is not None:
                    raise WorkFailed(f"the model server failed before it was ready: {self.log_tail()}")
                if cancelled():
                    raise WorkFailed("the model server start was cancelled")
                time.sleep(0.1)  # another process: nothing to await but its socket
        except BaseException:
            self.stop()
            raise

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        log = self._log
        if log is None:
            return ""
        log.flush()
        log.seek(0)
        tail = [line.strip() for line in log.read().splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(no output)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (closing its stdin is enough; signals if it does not go) and clean up."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                if process.stdin is not None:
                    process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._adapter.close()


def _child_main(arguments: list[str]) -> None:
    """In the app's child: mlx_lm.server, until the parent's end of stdin closes."""
    def watch_parent() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    import argparse

    # Where it listens, for the watch on its /health; the parent checked the address already.
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    where, _ = parser.parse_known_args(arguments)
    run_mlx_server(arguments, Address(where.host, where.port, allow_remote=True))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
