"""A real terminal for end-to-end tests: the app runs in a detached tmux session."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

TUNEDECK = str(Path(sys.executable).with_name("tunedeck"))


def needs_tmux():
    return pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """``tmux`` running one command; the screen is read back with ``capture-pane``."""

    def __init__(self, width: int = 160, height: int = 48, env: dict | None = None):
        self.name = f"tunedeck-e2e-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height
        self.env = {"TERM": "xterm-256color", **(env or {})}

    def tmux(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        # A server of its own, without the user's tmux.conf: a shared server's options (a
        # window-size or default-size set globally, an attached client) would change the size.
        return subprocess.run(["tmux", "-L", self.name, "-f", "/dev/null", *args], **kwargs)

    def start(self, command: str, cwd: Path) -> "Terminal":
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        # The shell stays after the app so its exit status (and any traceback) can be read.
        # COLUMNS and LINES, when a shell sets them, win over the terminal's real size in Textual.
        script = (f"cd {shlex.quote(str(cwd))} && unset COLUMNS LINES && env {exports} {command}; "
                  "status=$?; echo; echo EXITED $status; sleep 600")
        self.tmux("new-session", "-d", "-s", self.name, "-x", str(self.width), "-y", str(self.height),
                  "bash", "-c", script, check=True)
        # Pinned, in case the server sized the window otherwise; the app reads the size at start.
        self.tmux("resize-window", "-t", self.name, "-x", str(self.width), "-y", str(self.height),
                  check=True)
        size = self.tmux("display-message", "-p", "-t", self.name, "#{window_width}x#{window_height}",
                         capture_output=True, text=True, check=True).stdout.strip()
        assert size == f"{self.width}x{self.height}", f"tmux made a {size} window"
        # tmux waits for more of an escape sequence by default: keys would arrive late.
        self.tmux("set-option", "-t", self.name, "escape-time", "0", check=True)
        return self

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name, capture_output=True, text=True,
                         check=True).stdout

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys, check=True)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.name, "-l", text, check=True)

    def wait_for(self, condition, timeout: float = 60.0, what: str = ""):
        """Poll the screen until ``condition`` (a text, a regex or a function of the screen)
        holds; returns the screen for a text, the match for a regex, else what it returned."""
        if isinstance(condition, str):
            text = condition
            condition = lambda screen: screen if text in screen else None  # noqa: E731
            what = what or repr(text)
        elif isinstance(condition, re.Pattern):
            pattern = condition
            condition = lambda screen: pattern.search(screen)  # noqa: E731
            what = what or pattern.pattern
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            result = condition(screen)
            if result:
                return result
            time.sleep(0.1)  # another process draws the screen: nothing to await but time
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{screen}")

    def close(self) -> None:
        socket = self.tmux("display-message", "-p", "#{socket_path}", capture_output=True,
                           text=True).stdout.strip()
        self.tmux("kill-server", capture_output=True)
        if socket:
            Path(socket).unlink(missing_ok=True)  # tmux leaves it behind, one per terminal
