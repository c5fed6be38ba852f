"""The app process of a tab on its own, spoken to as textual-serve speaks to it (packets on its
standard input and output): it exits when told to even while its output is not being read,
which is how textual-serve's app was left behind, blocked, ignoring SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from .conftest import DEADLINE_S


def packet(kind: bytes, payload: dict) -> bytes:
    data = json.dumps(payload).encode()
    return kind + len(data).to_bytes(4, "big") + data


def start_app(project, home, log):
    env = {**os.environ, "TUNEDECK_HOME": str(home), "COLUMNS": "160", "ROWS": "48"}
    app = subprocess.Popen([sys.executable, "-m", "tunedeck.tui.web", str(project)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
    assert app.stdout.readline() == b"__GANGLION__\n"  # the web driver's first words
    app.stdout.read(4096)  # and the start of its first frame: it is drawing
    return app


def flood(app) -> None:
    """Ask for redraw after redraw at new sizes while nobody reads what it draws: its pipe
    fills and the app's event loop blocks writing."""
    for i in range(200):
        app.stdin.write(packet(b"M", {"type": "resize", "width": 120 + i % 60, "height": 40 + i % 8}))
    app.stdin.flush()


@pytest.mark.parametrize("how", ["SIGTERM", "closed input"])
def test_an_app_nobody_reads_still_exits(web_project, isolated_home, tmp_path, how):
    with open(tmp_path / "app.err", "wb") as log:
        app = start_app(web_project, isolated_home, log)
        try:
            flood(app)
            if how == "SIGTERM":
                app.send_signal(signal.SIGTERM)
            else:
                app.stdin.close()  # the server is gone
            app.wait(timeout=DEADLINE_S)
        finally:
            if app.poll() is None:
                app.kill()
    assert app.returncode is not None
