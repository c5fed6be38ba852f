"""Quitting never prints a traceback, whenever it comes: also while panes are still being built."""

import time

import pytest

from tests.tui.projects import write_project

from .terminal import TUNEDECK, needs_tmux

pytestmark = [pytest.mark.e2e, needs_tmux()]


@pytest.mark.parametrize("after_s", [0.2, 0.5, 1.0, 2.0])
def test_ctrl_q_at_any_moment_exits_cleanly(tmp_path, tiny_model, terminal, after_s):
    project = write_project(tmp_path / "project", tiny_model)
    term = terminal(160, 48).start(f"{TUNEDECK} {project}", cwd=project)
    started = time.monotonic()
    # The moment of the key is what this test is about: there is no condition to wait for.
    time.sleep(max(0.0, after_s - (time.monotonic() - started)))
    # F10, the other quit key: ctrl+q typed before the app has the terminal in raw mode is the
    # terminal's XON and never reaches it, while F10's bytes wait in the terminal for the app.
    term.press("F10")
    screen = term.wait_for("EXITED", timeout=60)
    assert "EXITED 0" in screen
    assert "Traceback" not in screen and "Error" not in screen, screen
