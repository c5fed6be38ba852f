"""The Checkpoints pane over a really trained run: the index, and every action's request."""

from tunedeck.core.checkpoints import checkpoint_index
from tunedeck.core.rundir import find_runs
from tunedeck.tui.checkpoints_pane import CheckpointBrowser, CheckpointsPane
from tunedeck.tui.dialogs import Ask, Confirm
from tunedeck.tui.messages import ChatRequested, DeleteRequested, ResumeRequested, WarmStartRequested

from .harness import PaneHarness

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
        assert table.cursor_row == 3  # the newest is selected


async def test_resume_warm_start_and_chat_ask_the_app_with_the_selected_checkpoint(finished_project):
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(100, 30)) as pilot:
        await shown(finished_project, pilot, app)
        await pilot.press("up", "r", "w", "c")
        assert app.of_type(ResumeRequested)[0].checkpoint.iteration == 30
        assert app.of_type(ResumeRequested)[0].iters is None
        assert app.of_type(WarmStartRequested)[0].checkpoint.iteration == 30
        assert app.of_type(ChatRequested)[0].checkpoint.iteration == 30


async def test_extend_asks_how_far(finished_project):
    app = PaneHarness(lambda: CheckpointsPane())
    async with app.run_test(size=(100, 30)) as pilot:
        await shown(finished_project, pilot, app)
        await pilot.press("e")
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
        await pilot.press("d")
        assert isinstance(app.screen, Confirm)
        await pilot.press("enter")  # Cancel has the focus: the safe answer
        assert not app.of_type(DeleteRequested)
        await pilot.press("d")
        await pilot.click("#confirm")
        assert app.of_type(DeleteRequested)[0].checkpoint.iteration == 40
