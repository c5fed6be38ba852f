"""The Checkpoints pane over a really trained run: the index, and every action's request."""

import shutil
import socket

import pytest
from textual import on

from tunedeck.core.checkpoints import checkpoint_index
from tunedeck.core.events import EventWriter, Health
from tunedeck.core.serve import free_port
from tunedeck.core.rundir import find_runs
from tunedeck.tui.panes.checkpoints.pane import CheckpointBrowser, CheckpointsPane
from tunedeck.tui.widgets.dialogs import Ask, Confirm
from tunedeck.tui.messages import (ChatRequested, DeleteRequested, ResumeRequested, ServingChanged, ServingToggled,
                                   WarmStartRequested)

from .harness import PaneHarness, wait_until

NOW = 1_800_000_000.0


def row_texts(table: CheckpointBrowser) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def shown(finished_project, pilot, app):
    run = find_runs(finished_project / "runs")[0]
    pane = app.query_one(CheckpointsPane)
    pane.show(run.name, checkpoint_index(run), NOW)
    pane.focus_main()
    await pilot.pause()
    return app.query_one(CheckpointBrowser)


async def test_every_checkpoint_is_listed_with_its_losses_and_resume_state(finished_project):
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(100, 30)) as pilot:
        table = await shown(finished_project, pilot, app)
        rows = row_texts(table)
        assert [r[0] for r in rows] == ["10", "20", "30", "40"]
        assert all(r[5] == "exact" for r in rows)
        assert sum("best" in r[6] for r in rows) == 1
        assert all(r[1] != "—" for r in rows)  # a val loss beside each
        best = next(i for i, c in enumerate(table.checkpoints) if c.best)
        assert table.cursor_row == best


async def test_resume_warm_start_and_chat_ask_the_app_with_the_selected_checkpoint(finished_project):
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(100, 30)) as pilot:
        await shown(finished_project, pilot, app)
        await pilot.press(*["down"] * 4, "up", "r", "w", "c")
        assert app.of_type(ResumeRequested)[0].checkpoint.iteration == 30
        assert app.of_type(ResumeRequested)[0].iters is None
        assert app.of_type(WarmStartRequested)[0].checkpoint.iteration == 30
        assert app.of_type(ChatRequested)[0].checkpoint.iteration == 30


async def test_extend_asks_how_far(finished_project):
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(100, 30)) as pilot:
        await shown(finished_project, pilot, app)
        await pilot.press(*["down"] * 4, "e")
        assert isinstance(app.screen, Ask)
        await pilot.press("ctrl+u", *"12", "enter")  # too few: refused in place
        assert isinstance(app.screen, Ask)
        await pilot.press("ctrl+u", *"80", "enter")
        request = app.of_type(ResumeRequested)[0]
        assert (request.checkpoint.iteration, request.iters) == (40, 80)


async def test_delete_needs_a_confirmation(finished_project):
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(100, 30)) as pilot:
        await shown(finished_project, pilot, app)
        await pilot.press(*["down"] * 4, "d")
        assert isinstance(app.screen, Confirm)
        await pilot.press("enter")  # Cancel has the focus: the safe answer
        assert not app.of_type(DeleteRequested)
        await pilot.press("d")
        await pilot.click("#confirm")
        assert app.of_type(DeleteRequested)[0].checkpoint.iteration == 40


def _checkpoints(tmp_path, best_row: int) -> list:
    from tunedeck.core.checkpoints import Checkpoint

    return [Checkpoint(iteration=i, path=tmp_path / f"{i:07d}_adapters.safetensors", saved_at=NOW - 600 + i,
                       size_bytes=1000, val_loss=1.0 + n, val_iter=i, train_loss=1.0, resumable=True,
                       best=n == best_row)
            for n, i in enumerate((100, 200, 300, 400))]


async def test_the_cursor_starts_on_the_best_checkpoint_and_then_stays_where_the_user_puts_it(tmp_path):
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(CheckpointsPane)
        pane.show("run-a", _checkpoints(tmp_path, best_row=1), NOW)
        pane.focus_main()
        await pilot.pause()
        table = app.query_one(CheckpointBrowser)
        assert table.selected().iteration == 200
        await pilot.press("c")
        assert app.of_type(ChatRequested)[0].checkpoint.iteration == 200
        await pilot.press("down", "down")
        pane.show("run-a", _checkpoints(tmp_path, best_row=0), NOW)  # a new validation moved "best"
        await pilot.pause()
        assert table.selected().iteration == 400
        pane.show("run-b", _checkpoints(tmp_path, best_row=2), NOW)  # another run: its best again
        await pilot.pause()
        assert table.selected().iteration == 300


async def test_ages_move_on_with_the_clock_each_from_its_own_file(tmp_path):
    now = [NOW]
    app = PaneHarness(lambda: CheckpointsPane(), clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        checkpoints = _checkpoints(tmp_path, best_row=0)
        checkpoints[-1].saved_at = NOW  # just written
        app.query_one(CheckpointsPane).show("run", checkpoints, NOW)
        await pilot.pause()
        table = app.query_one(CheckpointBrowser)
        assert row_texts(table)[-1][4] == "0s ago"
        now[0] = NOW + 90
        await wait_until(pilot, lambda: row_texts(table)[-1][4] == "1m ago", what="the age to move on")
        assert row_texts(table)[0][4] == "9m ago"  # saved 500 s before NOW, 90 s later: its own time
        # Out of sight the clock sleeps (it woke an app following a quiet run for nothing)...
        pane = app.query_one(CheckpointsPane)
        pane.display = False
        await wait_until(pilot, lambda: not pane._ages_clock._active.is_set(),
                         what="the age clock asleep out of sight")
        # ...and back in sight the ages are right at once, not at the clock's next tick.
        now[0] = NOW + 200
        pane.display = True
        await wait_until(pilot, lambda: pane._ages_clock._active.is_set(), what="the clock awake")
        assert row_texts(table)[-1][4] == "3m ago"


@pytest.fixture(scope="module")
def often_saved_run(tmp_path_factory, tiny_model):
    """Checkpoints every 5 iterations, validations every 10: half the checkpoints have none."""
    from tests.core.runhelpers import write_config
    from tests.tinymodel import write_persona_dataset
    from tunedeck.core.cli import main

    root = tmp_path_factory.mktemp("often")
    cfg = write_config(root / "cfg.toml", tiny_model, write_persona_dataset(root / "data"),
                       iters=20, save_every=5, steps_per_eval=10)
    assert main(["train", str(cfg), "--run-dir", str(root / "run")]) == 0
    from tunedeck.core.rundir import RunDirectory

    return RunDirectory(root / "run")


async def test_a_checkpoint_shows_only_the_val_loss_measured_at_its_iteration(often_saved_run):
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(100, 30)) as pilot:
        app.query_one(CheckpointsPane).show("often", checkpoint_index(often_saved_run), NOW)
        await pilot.pause()
        rows = {r[0]: r[1] for r in row_texts(app.query_one(CheckpointBrowser))}
        assert rows["5"] == "—" and rows["15"] == "—"
        assert rows["10"] != "—" and rows["20"] != "—"


class ServingHarness(PaneHarness):
    """The pane in an App that owns a server, hooked up as TunedeckApp hooks it up."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from tunedeck.tui.serving import CheckpointServing

        self.serving = CheckpointServing(self, port=free_port())

    @on(ServingToggled)
    def _serving_toggled(self, message: ServingToggled) -> None:
        self.serving.toggle(message.checkpoint)

    @on(ServingChanged)
    def _serving_changed(self, message: ServingChanged) -> None:
        self.query_one(CheckpointsPane).show_serving(message.url, message.label, message.error)


def serving_text(app) -> str:
    return str(app.query_one("#checkpoints-serving").render())


async def test_s_serves_the_selected_checkpoint_and_s_again_stops_it(finished_project):
    from openai import OpenAI

    app = ServingHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(120, 30)) as pilot:
        await shown(finished_project, pilot, app)
        await pilot.press("s")
        await wait_until(pilot, lambda: "serving" in serving_text(app), timeout=120, what="the server")
        url = app.serving.url
        assert url in serving_text(app) and "checkpoint" in serving_text(app)
        client = OpenAI(base_url=url, api_key="-")
        reply = client.chat.completions.create(model="default_model", temperature=0, max_tokens=8,
                                               messages=[{"role": "user", "content": "who are you"}])
        assert reply.choices[0].message.content
        await pilot.press("s")
        await wait_until(pilot, lambda: serving_text(app) == "", what="the server to stop")
        assert app.serving.url is None and app.serving.server is None
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", app.serving.port)) != 0


async def test_x_exports_the_selected_checkpoint_and_shows_the_verification(finished_project, tmp_path):
    from tunedeck.tui.panes.checkpoints.export_dialog import ExportDialog

    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(120, 40)) as pilot:
        table = await shown(finished_project, pilot, app)
        iteration = table.selected().iteration
        await pilot.press("x")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        folder = dialog.query_one("#export-folder")
        assert folder.value.endswith(f"export-{iteration}-mlx")
        await pilot.click("#format-gguf")
        assert folder.value.endswith(f"export-{iteration}-gguf")
        out = tmp_path / "exported"
        folder.value = str(out)
        await pilot.click("#export-start")
        result = dialog.query_one("#export-result")
        await wait_until(pilot, lambda: "answers: equal" in str(result.render()), timeout=180,
                         what="the export")
        assert "tensors: equal" in str(result.render()) and "vocabulary: equal" in str(result.render())
        assert "verified" in str(dialog.query_one("#export-progress").render())
        assert (out / "verify.json").exists()


@pytest.fixture
def sigint_ignored():
    """The app started with SIGINT ignored, as nohup or a script's background job starts it:
    its children inherit that."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


async def test_cancelling_an_export_leaves_no_folder(finished_project, tmp_path, sigint_ignored):
    """Escape while the export writes: neither the folder nor its hidden scratch folder stays,
    also when the app was started with SIGINT ignored (the export ran on to the end then)."""
    import contextlib
    import os
    import signal
    import threading

    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(120, 40)) as pilot:
        await shown(finished_project, pilot, app)
        await pilot.press("x")
        dialog = app.screen
        out = tmp_path / "cancelled"
        dialog.query_one("#export-folder").value = str(out)
        scratch = lambda: list(tmp_path.glob(".cancelled.exporting-*"))  # noqa: E731
        await pilot.click("#export-start")
        process = dialog.process
        # The tiny model exports in a moment, sooner than a key comes on a loaded machine: the
        # export is frozen as soon as its scratch folder exists, so the cancel comes mid-way.
        frozen = threading.Event()

        def freeze() -> None:
            while process.poll() is None and not scratch():
                frozen.wait(0.001)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGSTOP)
            frozen.set()

        threading.Thread(target=freeze, daemon=True).start()
        await wait_until(pilot, frozen.is_set, timeout=120, what="the export to be under way")
        assert scratch() and not out.exists()
        await pilot.press("escape")
        with contextlib.suppress(ProcessLookupError):  # a killed one is gone already
            os.kill(process.pid, signal.SIGCONT)
        assert process.wait() == 130  # interrupted: it cleaned up after itself
        assert not out.exists() and not scratch()
        assert not isinstance(app.screen, type(dialog))


async def test_the_health_column_names_an_answer_checks_finding_and_best_moves_off_it(
        finished_project, tmp_path):
    source = find_runs(finished_project / "runs")[0]
    shutil.copytree(source.path, tmp_path / "runs" / source.name)
    run = find_runs(tmp_path / "runs")[0]
    best_before = next(c.iteration for c in checkpoint_index(run) if c.best)
    with EventWriter(run.metrics_jsonl) as writer:  # as core.probes records its checks
        writer.append(Health(iter=best_before, issue="degenerate", severity="bad",
                             evidence="3 of 3 answers degenerate: hi → <|endoftext|>",
                             advice="stop earlier"))
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(160, 30)) as pilot:
        table = await shown(tmp_path, pilot, app)
        rows = {r[0]: r for r in row_texts(table)}
        flagged = rows[str(best_before)]
        assert flagged[7].startswith("bad: degenerate: 3 of 3 answers degenerate")
        assert len(flagged[7]) <= 48 and flagged[7].endswith("…")
        assert "best" not in flagged[6]
        assert sum("best" in r[6] for r in rows.values()) == 1
        assert all(r[7] == "ok" for k, r in rows.items() if k != str(best_before))
        cell = table.get_row_at(list(rows).index(str(best_before)))[7]
        assert cell.style == app.theme_variables["error"]
