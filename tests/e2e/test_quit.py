"""Quitting never prints a traceback, whenever it comes: also while panes are still being built."""

import time

import pytest

from tests.tui.projects import write_project

from .terminal import TUNEDECK, needs_tmux

pytestmark = [pytest.mark.e2e, needs_tmux()]


@pytest.mark.parametrize("after_s", [0.0, 0.2, 0.5, 1.0, 2.0])
def test_ctrl_q_at_any_moment_exits_cleanly(tmp_path, tiny_model, terminal, after_s):
    """From the first frame the panes out of sight are built one by one (seconds on a busy
    machine): ctrl+q at these moments after it lands before, during and after those builds."""
    project = write_project(tmp_path / "project", tiny_model)
    term = terminal(160, 48).start(f"{TUNEDECK} {project}", cwd=project)
    term.wait_for("Start run")  # the first frame: from here on the app reads keys
    # The moment of the key is what this test is about: there is no condition to wait for.
    time.sleep(after_s)
    term.press("C-q")
    screen = term.wait_for("EXITED", timeout=60)
    assert "EXITED 0" in screen
    assert "Traceback" not in screen and "Error" not in screen, screen
