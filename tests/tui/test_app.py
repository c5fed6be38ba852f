"""The whole app on a project: panes, keys, themes, and runs really trained, stopped, resumed."""

import re
import socket
from pathlib import Path

from textual.widgets import Input, TabbedContent, Tabs
from textual.widgets._footer import FooterKey

from tunedeck.core.home import settings_file
from tunedeck.core.rundir import find_runs
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.panes.checkpoints.pane import CheckpointBrowser
from tunedeck.tui.panes.hyperparameters import HyperparametersPane
from tunedeck.tui.panes.hyperparameters.config_field import ConfigField
from tunedeck.tui.widgets.key_footer import KeyFooter
from tunedeck.tui.panes.training.run_status_line import Figures
from tunedeck.tui.panes.training.pane import TrainingPane

from .projects import write_project
from .harness import wait_until

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


async def start_from_the_form(pilot, app) -> None:
    pane = await wait_until(pilot, lambda: app.query_one(HyperparametersPane), what="the form")
    await wait_until(pilot, lambda: pane.complete and app.focused is not None, what="the form")
    await pilot.press("ctrl+r")
    await wait_until(pilot, lambda: active(app) == "training", timeout=60, what="the run to start")


async def train_to_checkpoint_20(pilot, app) -> None:
    """Start from the form, wait for checkpoint 20, and show the Training pane."""
    await start_from_the_form(pilot, app)
    await wait_until(pilot, lambda: 20 in checkpoints(app), timeout=120, what="checkpoint 20")
    app.action_show_pane("training")


def active(app) -> str:
    return app.query_one(TabbedContent).active


def state(app) -> str:
    return str(app.query_one("#state").render())


def figures(app) -> str:
    return " · ".join(app.query_one(Figures).parts)


def checkpoints(app) -> list[int]:
    return [c.iteration for c in app.query_one(CheckpointBrowser).checkpoints]


async def test_five_panes_and_the_form_first_when_there_is_no_run(project):
    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)):
        titles = [str(tab.label) for tab in app.query_one(Tabs).query("Tab")]
        assert titles == ["Data", "Hyperparameters", "Training", "Checkpoints", "Chat"]
        assert active(app) == "hyperparameters"


async def test_collection_is_on_again_once_the_panes_are_built(finished_project):
    """`tunedeck` (open_app) turns garbage collection off for the start-up; the App must turn it
    on again, or an app left open for hours grows without bound."""
    import gc

    gc.disable()
    try:
        app = TunedeckApp(project=finished_project)
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_until(pilot, lambda: gc.isenabled(), what="collection on again")
            frozen_at_first_frame = gc.get_freeze_count()
            assert frozen_at_first_frame > 0  # the start-up's objects: no collection walks them
            await wait_until(pilot, lambda: not app.panes_to_build, timeout=120,
                             what="every pane built")
            # Built and frozen too, and collection still on.
            await wait_until(pilot, lambda: gc.get_freeze_count() > frozen_at_first_frame,
                             what="the panes frozen")
            assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


async def test_digits_switch_panes_but_type_into_a_text_field(project):
    app = TunedeckApp(project=project)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(HyperparametersPane).complete, what="the form")
        name = app.query_one("#field-name", ConfigField).editor
        name.focus()
        # Focusing selects the text; "end" must come after that, or "3" replaces "tiny".
        await wait_until(pilot, lambda: name.has_focus, what="the name field's focus")
        await pilot.pause()
        await pilot.press("end", "3", "x")
        assert name.value == "tiny3x"
        assert active(app) == "hyperparameters"
        await pilot.press("escape")  # leaves the field; now digits are pane keys
        await pilot.press("3")
        assert active(app) == "training"
        await pilot.press("4")
        assert active(app) == "checkpoints"



async def test_a_pane_chosen_right_after_another_stays_shown_and_keeps_the_focus(project):
    """A run started shows Training and focuses its log; a pane chosen before that focus has
    reached the tabs (the key came a moment after, or a test asked at once) stays the one shown.
    Textual's tabs follow a focus into a pane by a message several widgets long, which then
    arrived after the second choice: Training came back with the form's focus hidden in it, so
    the focus was lost and no key reached a pane."""
    app = TunedeckApp(project=project)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await wait_until(pilot, lambda: app.query_one(HyperparametersPane), what="the form")
        await wait_until(pilot, lambda: pane.complete and "training" in app.pane_mounted
                         and app.pane_mounted["training"].is_set(), what="the Training pane")
        app.action_show_pane("training")
        app.action_show_pane("hyperparameters")
        form = pane.query_one("#form")
        await wait_until(pilot, lambda: app.focused is form, what="the form's focus")
        for _ in range(10):  # the focus message from the log makes its way up to the tabs
            await pilot.pause()
        assert (active(app), app.focused) == ("hyperparameters", form)

async def test_the_footer_keeps_its_keys_while_tab_moves_through_the_form(project):
    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.query_one(HyperparametersPane).complete, what="the form")
        footer = app.query_one(KeyFooter)
        await pilot.press("tab")
        first = app.focused
        keys = list(footer.query(FooterKey))
        assert "Start run" in [key.description for key in keys]
        await pilot.press("tab", "tab")
        assert isinstance(app.focused, Input) and app.focused is not first
        # The same keys, so the same widgets: moving the focus did not rebuild the footer.
        assert list(footer.query(FooterKey)) == keys
        await pilot.press("escape", "3")  # other keys in another pane: rebuilt
        await wait_until(pilot, lambda: "Start run" not in [k.description for k in footer.query(FooterKey)],
                         what="the form's keys to leave the footer")


async def test_the_theme_switch_is_remembered(project):
    app = TunedeckApp(project=project)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "tunedeck-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "tunedeck-light"
    assert 'theme = "tunedeck-light"' in settings_file().read_text()
    again = TunedeckApp(project=project)
    async with again.run_test(size=(100, 30)):
        assert again.theme == "tunedeck-light"


async def test_ctrl_q_and_f10_quit(project):
    for key in ("ctrl+q", "f10"):
        app = TunedeckApp(project=project)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press(key)
            await pilot.pause()
            assert app.return_code == 0


async def test_watch_a_log_file_fills_the_training_pane():
    app = TunedeckApp(watch=str(LOGS / "v032_crash.log"))
    async with app.run_test(size=(120, 40)) as pilot:
        assert active(app) == "training"
        await wait_until(pilot, lambda: state(app) == "failed", what="the crash to show")
        assert "error:" in figures(app)


async def test_start_from_the_form_then_reopen_and_find_the_whole_history(project):
    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)) as pilot:
        await start_from_the_form(pilot, app)
        await wait_until(pilot, lambda: state(app) == "finished", timeout=180, what="the run to finish")
        assert "iter 40/40" in figures(app)
        await wait_until(pilot, lambda: checkpoints(app) == [10, 20, 30, 40], what="checkpoints")
    again = TunedeckApp(project=project)
    async with again.run_test(size=(160, 48)) as pilot:
        assert active(again) == "training"
        pane = again.query_one(TrainingPane)
        # The state comes from the run's list at once, its history with the follower's first
        # update: wait for the history the user comes back for.
        await wait_until(pilot, lambda: state(again) == "finished" and pane.history.train.iters[-1:] == [40],
                         what="the run to reappear with its whole history")
        assert len(pane.history.val) >= 4


async def test_stop_then_resume_from_the_checkpoints_pane(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, iters=2000, save_every=20)
    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)) as pilot:
        await train_to_checkpoint_20(pilot, app)
        await pilot.press("x")
        await wait_until(pilot, lambda: state(app) == "stopped", timeout=60, what="the stop")
        stopped_at = app.query_one(TrainingPane).history.iteration
        app.action_show_pane("checkpoints")
        await pilot.press("e")
        await pilot.press("ctrl+u", *str(max(checkpoints(app)) + 30), "enter")
        await wait_until(pilot, lambda: state(app) == "running", timeout=60, what="the resume")
        await wait_until(pilot, lambda: state(app) == "finished", timeout=180, what="the end")
        run = find_runs(project / "runs")[0]
        assert stopped_at >= 20
        assert run.read_status()["state"] == "finished"


async def test_stop_after_the_next_checkpoint(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, iters=2000, save_every=20)
    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)) as pilot:
        await train_to_checkpoint_20(pilot, app)
        run = find_runs(project / "runs")[0]
        before = {int(p.name[:7]) for p in run.adapters.glob("*_resume.json")}
        await pilot.press("n")
        # The stop is asked for in a worker; the note comes once the run has the request (and
        # goes when the run has stopped, which on a quick machine can come first).
        await wait_until(pilot, lambda: "stopping after the next checkpoint" in figures(app)
                         or state(app) == "stopped", what="the note")
        await wait_until(pilot, lambda: state(app) == "stopped", timeout=60, what="the stop")
        await wait_until(pilot, lambda: app.query_one(TrainingPane).history.iteration == max(checkpoints(app)),
                         what="the last report to match the last checkpoint")
        status = run.read_status()
        new = sorted({int(p.name[:7]) for p in run.adapters.glob("*_resume.json")} - before)
        # It stopped right at the first checkpoint after the run got the request (or at the one
        # being written as it came): the run says in its log when it got it. How many checkpoints
        # the tiny model passes while the key travels (app, worker, signal) depends on the load.
        log = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in run.train_log.read_text().splitlines()]
        got = log.index("[tunedeck] stop requested (after-checkpoint)")

        def saved(lines: list[str]) -> list[int]:
            return [int(m.group(1)) for m in map(re.compile(r"save\s+(\d+)_adapters").match, lines) if m]

        after = saved(log[got + 1:])
        assert len(after) <= 1, f"went on past the checkpoint after the request: {after}"
        stopped_at = after[0] if after else saved(log[:got])[-1]
        # Every checkpoint on the way is complete, the last step trained is the stop's checkpoint,
        # and the planned 2000 iterations were not run out.
        assert new == list(range(max(before) + 20, stopped_at + 1, 20))
        assert status["iter"] == status["last_checkpoint"] == stopped_at == max(checkpoints(app)) < 2000


async def test_watch_a_run_directory(finished_project):
    run = find_runs(finished_project / "runs")[0]
    app = TunedeckApp(watch=str(run.path))
    async with app.run_test(size=(120, 40)) as pilot:
        assert active(app) == "training"
        # The state is known before the history has been read (see the test above).
        await wait_until(pilot, lambda: state(app) == "finished" and "iter 40/40" in figures(app),
                         what="the finished run and its figures")
        await wait_until(pilot, lambda: checkpoints(app) == [10, 20, 30, 40], what="its checkpoints")


async def test_the_app_owns_its_model_server_shows_it_and_stops_it_on_quit(finished_project):
    from tunedeck.core.serve import free_port

    app = TunedeckApp(project=finished_project)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: checkpoints(app) == [10, 20, 30, 40], what="the checkpoints")
        app.serving.port = free_port()
        app.action_show_pane("checkpoints")
        await pilot.press("s")
        await wait_until(pilot, lambda: app.serving.url is not None, timeout=180, what="the server")
        url, port = app.serving.url, app.serving.port
        await wait_until(pilot, lambda: f"serving {url}" in figures(app), what="the URL in the status line")
        server = app.serving.server
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: app.serving.server is None, what="the server to stop")
    assert not server.running
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
