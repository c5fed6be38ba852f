"""Snapshots of the main states. Deterministic: fixed sizes, a frozen clock in UTC, fixed paths
and data that do not depend on a machine's timing."""

import shutil
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from tunedeck.core.checkpoints import Checkpoint
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.panes.checkpoints.pane import CheckpointsPane
from tunedeck.tui.panes.hyperparameters import HyperparametersPane
from tunedeck.tui.panes.training.loss_plot import StalePlot
from tunedeck.tui.panes.training.run_log import RunLog
from tunedeck.tui.panes.training.run_status_line import Figures

from .harness import PaneHarness, wait_until
from .projects import write_project

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
NOW = 1_800_000_000.0
# The form shows resolved paths: the project must live at the same place on every run.
SNAPSHOT_PROJECT = Path("/tmp/tunedeck-snapshot-project")


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def fixed_project(tiny_model):
    shutil.rmtree(SNAPSHOT_PROJECT, ignore_errors=True)
    model = SNAPSHOT_PROJECT / "model"
    shutil.copytree(tiny_model, model)
    yield write_project(SNAPSHOT_PROJECT, model)
    shutil.rmtree(SNAPSHOT_PROJECT, ignore_errors=True)


async def until_log_read(pilot):
    app = pilot.app
    await wait_until(pilot, lambda: any("1200/1200" in p for p in app.query_one(Figures).parts),
                     what="the whole log")
    await wait_until(pilot, lambda: all(plot.settled for plot in app.query(StalePlot)),
                     what="the plots to be drawn")
    # The log sizes its lines in a thread; where that leaves the scroll is down to timing.
    app.query_one(RunLog).scroll_end(animate=False, immediate=True)
    await pilot.pause()


def test_training_pane_following_a_log(snap_compare):
    app = TunedeckApp(watch=str(LOGS / "v032_long.log"), clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(120, 40), run_before=until_log_read)


def test_training_pane_at_80x24_in_the_light_theme(snap_compare):
    app = TunedeckApp(watch=str(LOGS / "v032_long.log"), clock=lambda: NOW)
    app.theme = "tunedeck-light"
    assert snap_compare(app, terminal_size=(80, 24), run_before=until_log_read)


def test_the_form_of_a_project(snap_compare, fixed_project):
    async def form_complete(pilot):
        pane = pilot.app.query_one(HyperparametersPane)
        await wait_until(pilot, lambda: pane.complete and "epochs" in str(
            pilot.app.query_one("#field-iters .field-note").render()), what="the form")
        for editor in pilot.app.query(Input):
            editor.cursor_blink = False  # a blinking cursor is caught on or off at random
        await pilot.pause()

    app = TunedeckApp(project=fixed_project, clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(120, 40), run_before=form_complete)


def test_checkpoint_list_with_the_best_marked(snap_compare, tmp_path):
    def checkpoint(iteration, val, train, resumable=True, best=False):
        return Checkpoint(iteration=iteration, path=tmp_path / f"{iteration:07d}_adapters.safetensors",
                          saved_at=NOW - 3600 + iteration, size_bytes=68_300, val_loss=val,
                          val_iter=iteration, train_loss=train, resumable=resumable, best=best)

    checkpoints = [checkpoint(100, 2.193, 2.035, resumable=False), checkpoint(200, 2.093, 1.916),
                   checkpoint(300, 2.073, 1.883, best=True), checkpoint(400, 2.101, 1.850)]

    async def shown(pilot):
        pilot.app.query_one(CheckpointsPane).show("tiny-20261122-073305", checkpoints, NOW)
        await pilot.pause()

    app = PaneHarness(lambda: CheckpointsPane(), clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(100, 20), run_before=shown)
