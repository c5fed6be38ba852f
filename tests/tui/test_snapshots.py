"""Snapshots of every pane at 80×24 and 160×48, in the dark and the light theme (alternating, so
each pane is seen in both), and of the Training pane's failed, stalled and finished runs.

Deterministic: fixed sizes, a frozen clock in UTC, fixed paths, and data that do not depend on a
machine's timing (each snapshot waits for its pane to have drawn everything it will draw)."""

import fcntl
import shutil
import time
from pathlib import Path

import pytest
from textual.widgets import Input, TextArea

from tunedeck.core.checkpoints import Checkpoint
from tunedeck.core.events import End, Start, Train, Val
from tunedeck.core.logparse import parse_file
from tunedeck.core.run_follower import RunUpdate
from tunedeck.tui.app import PANES, TunedeckApp
from tunedeck.tui.panes.training.loss_plot import StalePlot
from tunedeck.tui.panes.training.run_log import RunLog
from tunedeck.tui.panes.training.run_status_line import Figures

from .harness import wait_until
from .projects import write_project

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
RUN = "tiny-20270115-071500"
# The panes show resolved paths: the project must live at the same place on every run.
SNAPSHOT_PROJECT = Path("/tmp/tunedeck-snapshot-project")
SMALL, LARGE = (80, 24), (160, 48)
DARK, LIGHT = "tunedeck-dark", "tunedeck-light"
PANE_NAMES = [name for name, _title in PANES]


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def fixed_project(tiny_model):
    # One place for every run of these tests on the machine: two suites at once (engineers
    # share it) take turns, or one would delete the other's project under its app.
    with open(SNAPSHOT_PROJECT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(SNAPSHOT_PROJECT, ignore_errors=True)
        model = SNAPSHOT_PROJECT / "model"
        shutil.copytree(tiny_model, model)
        yield write_project(SNAPSHOT_PROJECT, model)
        shutil.rmtree(SNAPSHOT_PROJECT, ignore_errors=True)


async def still_cursors(pilot):
    for editor in [*pilot.app.query(Input), *pilot.app.query(TextArea)]:
        editor.cursor_blink = False  # a blinking cursor is caught on or off at random
    await pilot.pause()


async def shown(pilot, pane: str):
    """``pane`` on show, with the focus the App gives it, once every pane is built (the App
    builds them one after another after the first frame; the snapshot must not catch that)."""
    app = pilot.app
    await every_pane_built(pilot)
    app.action_show_pane(pane)
    await pilot.pause()
    return app.query_one(f"#{pane}-pane")


async def every_pane_built(pilot):
    await wait_until(pilot, lambda: all(pilot.app.query(f"#{name}-pane") for name in PANE_NAMES),
                     timeout=120, what="every pane")


async def plots_drawn(pilot):
    await every_pane_built(pilot)
    await wait_until(pilot, lambda: all(plot.settled for plot in pilot.app.query(StalePlot)),
                     what="the plots to be drawn")
    # The log sizes its lines in a thread; where that leaves the scroll is down to timing.
    pilot.app.query_one(RunLog).scroll_end(animate=False, immediate=True)
    await pilot.pause()


async def until_log_read(pilot):
    await wait_until(pilot, lambda: any("1200/1200" in p for p in pilot.app.query_one(Figures).parts),
                     what="the whole log")
    await plots_drawn(pilot)


async def data_read(pilot):
    pane = await shown(pilot, "data")
    await wait_until(pilot, lambda: pane.row is not None and pane.report is not None
                     and pane.rows.done, timeout=120, what="the rows and their check")
    await still_cursors(pilot)


async def form_complete(pilot):
    pane = await shown(pilot, "hyperparameters")
    await wait_until(pilot, lambda: pane.complete and "epochs" in str(
        pilot.app.query_one("#field-iters .field-note").render()), what="the form")
    await still_cursors(pilot)


def checkpoint(tmp: Path, iteration, val, train, resumable=True, best=False) -> Checkpoint:
    return Checkpoint(iteration=iteration, path=tmp / f"{iteration:07d}_adapters.safetensors",
                      saved_at=NOW - 3600 + iteration, size_bytes=68_300, val_loss=val, val_iter=iteration,
                      train_loss=train, resumable=resumable, best=best)


async def checkpoints_listed(pilot):
    pane = await shown(pilot, "checkpoints")
    runs = SNAPSHOT_PROJECT / "runs" / RUN / "adapters"
    pane.show(RUN, [checkpoint(runs, 100, 2.193, 2.035, resumable=False), checkpoint(runs, 200, 2.093, 1.916),
                    checkpoint(runs, 300, 2.073, 1.883, best=True), checkpoint(runs, 400, 2.101, 1.850)], NOW)
    await pilot.pause()


async def chat_ready(pilot):
    pane = await shown(pilot, "chat")
    # The model loads once the choices are listed: between the two, it is neither loading nor
    # loaded, so the wait is for it loaded (seen as a red snapshot on a loaded machine).
    await wait_until(pilot, lambda: pane.adapters and pane.loaded is not None and not pane.model_loading,
                     timeout=120, what="the choices and the model loaded")
    await still_cursors(pilot)


PANES = {"data": data_read, "hyperparameters": form_complete, "checkpoints": checkpoints_listed,
         "chat": chat_ready}


@pytest.mark.parametrize("pane, size, theme", [
    pytest.param(pane, size, theme, id=f"{pane}-{size[0]}x{size[1]}-{theme.partition('-')[2]}")
    for pane, size, theme in [("data", SMALL, DARK), ("data", LARGE, LIGHT),
                              ("checkpoints", SMALL, DARK), ("checkpoints", LARGE, LIGHT),
                              ("chat", SMALL, LIGHT), ("chat", LARGE, DARK),
                              ("hyperparameters", SMALL, LIGHT), ("hyperparameters", LARGE, DARK)]])
def test_a_pane_of_a_project(snap_compare, fixed_project, pane, size, theme):
    app = TunedeckApp(project=fixed_project, clock=lambda: NOW)
    app.theme = theme
    assert snap_compare(app, terminal_size=size, run_before=PANES[pane])


@pytest.mark.parametrize("size, theme", [(SMALL, DARK), (LARGE, LIGHT)], ids=["80x24-dark", "160x48-light"])
def test_the_training_pane_following_a_log(snap_compare, size, theme):
    app = TunedeckApp(watch=str(LOGS / "v032_long.log"), clock=lambda: NOW)
    app.theme = theme
    assert snap_compare(app, terminal_size=size, run_before=until_log_read)


def test_a_failed_run(snap_compare):
    async def crashed(pilot):
        await wait_until(pilot, lambda: str(pilot.app.query_one("#state").render()).startswith("failed"),
                         what="the crash")
        await plots_drawn(pilot)

    app = TunedeckApp(watch=str(LOGS / "v032_crash.log"), clock=lambda: NOW)
    app.theme = LIGHT
    assert snap_compare(app, terminal_size=(120, 36), run_before=crashed)


def train(i: int) -> Train:
    return Train(iter=i, loss=3.0 - i / 100, lr=1e-5, tokens_per_sec=1500.0, peak_mem_gb=1.25,
                 it_per_sec=0.33, trained_tokens=300 * i)


def test_a_stalled_run(snap_compare, fixed_project):
    """Ten minutes without a line from a run whose process still holds it."""
    async def stalled(pilot):
        pane = await shown(pilot, "training")
        pane.follow(RUN, "running")
        start = NOW - 900
        pane.add_update(RunUpdate(events=[Start(total_iters=200), Val(iter=1, loss=3.1)], state="running",
                                  status={"started_at": start}, arrived_at=start), live=True, now=start)
        for k in range(1, 11):
            event = train(10 * k)
            line = (f"Iter {event.iter}: Train loss {event.loss:.3f}, Learning Rate {event.lr:.3e}, "
                    f"It/sec {event.it_per_sec:.3f}, Tokens/sec {event.tokens_per_sec:.3f}, "
                    f"Trained Tokens {event.trained_tokens}, Peak mem {event.peak_mem_gb:.3f} GB")
            pane.add_update(RunUpdate(events=[event], log_lines=[line], arrived_at=start + 30 * k),
                            live=True, now=start + 30 * k)
        pane.refresh_status(NOW)
        await plots_drawn(pilot)

    app = TunedeckApp(project=fixed_project, clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(120, 36), run_before=stalled)


def test_a_finished_run(snap_compare, fixed_project):
    async def finished(pilot):
        pane = await shown(pilot, "training")
        log = LOGS / "v032_long.log"
        pane.follow(RUN, "finished")
        pane.add_update(RunUpdate(events=[*parse_file(log), End(state="finished")], state="finished",
                                  status={"state": "finished"}, log_lines=log.read_text().splitlines(),
                                  arrived_at=NOW, backlog=True), live=False, now=NOW)
        await plots_drawn(pilot)

    app = TunedeckApp(project=fixed_project, clock=lambda: NOW)
    app.theme = LIGHT
    assert snap_compare(app, terminal_size=(120, 36), run_before=finished)

