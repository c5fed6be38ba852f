"""The cockpit in a real terminal: a run started, watched, left, found again, stopped, resumed."""

import re

import pytest

from tests.tui.projects import write_project
from tunedeck.core.rundir import find_runs

from .terminal import TUNEDECK, needs_tmux

pytestmark = [pytest.mark.e2e, needs_tmux()]

ITERATION = re.compile(r"iter (\d+)/(\d+)")
ETA = re.compile(r"ETA (\d+h\d\dm|\d+m\d\ds|\d+s)")  # core/eta.py format_duration
# Long enough to be still going through the watching, the quit and the reopening before the
# stop (300 iterations of the tiny model ended in 22 s at load 10; 2000 take a minute), and short
# enough that the resumed run gets to its end.
ITERS = 2000


def iteration(screen: str) -> int:
    found = ITERATION.search(screen)
    return int(found.group(1)) if found else -1


def plot_rows(screen: str) -> list[str]:
    """The lines drawn by the loss plot (braille dots), to tell whether it moved."""
    return [line for line in screen.splitlines() if re.search("[\u2801-\u28ff]", line)]


def test_start_watch_leave_return_stop_resume_finish(tmp_path, tiny_model, terminal):
    project = write_project(tmp_path / "project", tiny_model, iters=ITERS, steps_per_report=10,
                            steps_per_eval=100, save_every=100)
    term = terminal(160, 48).start(f"{TUNEDECK} {project}", cwd=project)

    # The form comes first in a project without runs; ctrl+r starts a detached run.
    term.wait_for("learning_rate", what="the Hyperparameters form")
    term.wait_for(lambda s: "Start run" in s and "lora_parameters.rank" in s, what="the whole form")
    term.press("C-r")
    term.wait_for(re.compile(rf"running .*iter \d+/{ITERS}"), timeout=90, what="the run reporting")

    # The plot moves as the run reports and an ETA stays shown. (Its value may rightly hold
    # still while the run slows, as on a busy machine; tests/core/test_eta.py checks the figures.)
    first = term.wait_for(lambda s: ETA.search(s) and plot_rows(s) and s, timeout=60,
                          what="an ETA and a plotted curve")
    moved = term.wait_for(lambda s: iteration(s) >= iteration(first) + 20 and s, timeout=60,
                          what="twenty more iterations")
    assert ETA.search(moved)
    assert plot_rows(moved) != plot_rows(first)

    # Quitting the app leaves the run training.
    term.press("C-q")
    term.wait_for("EXITED 0", timeout=60)
    run = find_runs(project / "runs")[0]
    assert run.state() == "running"
    left_at = iteration(moved)

    # Opened again: the same run, still going, with its history from the first iteration.
    again = terminal(160, 48).start(f"{TUNEDECK} {project}", cwd=project)
    back = again.wait_for(lambda s: re.search(rf"running .*iter \d+/{ITERS}", s) and s, timeout=90,
                          what="the run found again")
    assert iteration(back) >= left_at
    # The loss plot's x axis starts at the first iteration, not where the app was reopened.
    again.wait_for(re.compile(r"^\s+1\s{10,}\d+\s{10,}\d+", re.M), what="the x axis from iteration 1")

    # Stop it from the Training pane, then resume it from the Checkpoints pane: once it has a
    # checkpoint to resume from (a loaded machine reopened the app before iteration 100).
    again.wait_for(lambda _: any(run.adapters.glob("*_resume.json")), timeout=300, what="the first checkpoint")
    again.press("x")
    again.wait_for(re.compile(rf"stopped .*iter \d+/{ITERS}"), timeout=60, what="the stop")
    assert run.state() == "stopped"
    again.press("4")
    again.wait_for(lambda s: "exact" in s and "checkpoints of" in s, what="the checkpoint list")
    again.press("r")
    again.wait_for(re.compile(rf"running .*iter \d+/{ITERS}"), timeout=90, what="the resumed run")
    again.press("3")
    again.wait_for(re.compile(rf"finished .*iter {ITERS}/{ITERS}"), timeout=900, what="the end of the run")
    assert run.state() == "finished"
    assert "Traceback" not in again.screen()
