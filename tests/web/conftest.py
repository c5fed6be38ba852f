"""Fixtures of the browser-mode tests: a real `tunedeck web` on a free port, and tabs opened on it
the way the page opens them (its WebSocket, with the token and the page's own Origin)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tui.harness import wait_until
from tests.tui.projects import write_project

TITLES = ("Data", "Hyperparameters", "Training", "Checkpoints", "Chat")
TUNEDECK = str(Path(sys.executable).parent / "tunedeck")
# Generous: each tab starts a Python process with Textual on a shared 2-core machine.
DEADLINE_S = 180.0

# What a terminal would obey rather than show: CSI and OSC sequences, and two-byte escapes.
CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


def screen_text(data: bytes) -> str:
    return CONTROL.sub("", data.decode("utf-8", errors="replace"))


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc: no extra dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to collect it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class _EventLoop:
    """What wait_until asks of a Pilot: a pause that lets the app run. Here the app is another
    process and the event loop runs the tabs' connections (the server drops a silent one)."""

    pause = staticmethod(asyncio.sleep)


async def eventually(condition, what: str, timeout: float = DEADLINE_S):
    """Wait for a condition another process makes true."""
    return await wait_until(_EventLoop, condition, timeout=timeout, what=what)


@dataclass
class WebServer:
    process: subprocess.Popen
    url: str
    port: int
    token: str
    output: list = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def page(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def websocket_url(self, token: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{token or self.token}?width=160&height=48"

    def apps(self) -> list[int]:
        """The app processes it started, one per open tab."""
        return [pid for pid in child_pids(self.process.pid) if alive(pid)]

    def log(self) -> str:
        return "".join(self.output)


def start_web(project: Path, home: Path, *args: str) -> WebServer:
    env = {**os.environ, "TUNEDECK_HOME": str(home)}
    process = subprocess.Popen([TUNEDECK, "web", str(project), "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output: list[str] = []
    url = None
    for line in process.stdout:  # the URL comes first; the rest is kept for failure messages
        output.append(line)
        if line.startswith("open http"):
            url = line.split()[1]
            break
    if url is None:
        process.wait()
        raise AssertionError(f"tunedeck web did not start: {''.join(output)}")
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    port = int(url.split(":")[2].split("/")[0])
    return WebServer(process, url, port, url.split("token=")[1], output)


def stop_web(server: WebServer) -> None:
    apps = server.apps()
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.process.kill()
    for pid in apps:  # never leave an app behind, even after a failed test
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


class Tab:
    """One browser tab, as the page script is one: keys go in as ["stdin", ...], the screen's
    bytes come out, and text messages (a download offered) are kept."""

    def __init__(self, websocket):
        self.websocket = websocket
        self.screen = b""
        self.texts: list = []

    async def until(self, condition, what: str, since: int = 0, timeout: float = DEADLINE_S) -> str:
        """Read the stream until ``condition(text drawn since byte `since`)`` holds."""
        deadline = time.monotonic() + timeout
        while not condition(screen_text(self.screen[since:])):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; the screen showed: "
                                     f"{screen_text(self.screen[since:])[-1500:]!r}")
            try:
                message = await asyncio.wait_for(self.websocket.recv(), left)
            except asyncio.TimeoutError:
                continue
            if isinstance(message, bytes):
                self.screen += message
            else:
                self.texts.append(json.loads(message))
        return screen_text(self.screen[since:])

    async def panes(self) -> str:
        return await self.until(lambda text: all(t in text for t in TITLES), "the five pane titles")

    async def press(self, keys: str) -> None:
        await self.websocket.send(json.dumps(["stdin", keys]))


@pytest.fixture
def web_project(tmp_path, tiny_model) -> Path:
    # Long enough that a run started in a test is still going when the test looks.
    return write_project(tmp_path / "project", tiny_model, iters=100_000, save_every=1000,
                         steps_per_eval=1000)


@pytest.fixture
def web(web_project, isolated_home):
    """``tunedeck web`` on the project, stopped (with any app left behind) after the test."""
    servers: list[WebServer] = []

    def start(*args: str) -> WebServer:
        server = start_web(web_project, isolated_home, *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_web(server)


@pytest.fixture
def stop_runs(web_project):
    """Runs started from a tab outlive it by design: stop them after the test."""
    yield
    from tunedeck.core.rundir import find_runs
    from tunedeck.core.runs import stop_run

    for run in find_runs(web_project / "runs"):
        if run.state() in ("starting", "running"):
            stop_run(run)
