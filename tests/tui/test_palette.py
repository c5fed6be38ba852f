"""The command palette lists the actions of the App and of the pane on show, with their keys,
and runs them; an action that would do nothing now is not offered."""

from pathlib import Path

from textual.command import CommandPalette
from textual.widgets import OptionList, Tabs

from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.panes.training.loss_plot import LossPlot

from .harness import wait_until

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def offered(app) -> dict[str, str]:
    return {command.title: command.help for command in app.get_system_commands(app.screen)}


async def test_the_palette_offers_the_panes_actions_and_runs_one():
    app = TunedeckApp(watch=str(LOGS / "v032_long.log"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query("#checkpoints-pane") and app.query("#chat-pane"),
                         what="every pane")
        commands = offered(app)
        assert commands["Smooth"] == "Training pane · key s"
        assert commands["Show Data"] == "tunedeck · key 1" and commands["Next theme"] == "tunedeck · key ^t"
        assert commands["Quit"] == "Quit the application as soon as possible"  # Textual's, not twice
        assert "Resume ½ lr" not in commands  # nothing is diverging: it would do nothing
        assert "Delete" not in commands and "Start run" not in commands  # panes out of sight
        await pilot.press("escape")  # the focus leaves the pane for its tab
        assert isinstance(app.focused, Tabs) and "Smooth" in offered(app)

        plot = app.query_one(LossPlot)
        before = plot.smoothing
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"smooth")
        results = app.screen.query_one(OptionList)
        await wait_until(pilot, lambda: results.option_count and results.highlighted == 0
                         and "Smooth" in str(results.get_option_at_index(0).prompt), what="Smooth found")
        await pilot.press("enter")
        await wait_until(pilot, lambda: plot.smoothing != before, what="the smoothing to change")


async def test_the_row_lists_cursor_keys_are_left_to_the_list(project):
    """Up, Down, Page up… of the Data pane's rows are keys of the list, not actions to search for."""
    from tunedeck.tui.panes.data.row_list import RowList

    app = TunedeckApp(project=project)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("1")
        await wait_until(pilot, lambda: app.query(RowList) and app.focused is app.query_one(RowList),
                         what="the row list focused")
        commands = offered(app)
        assert "File" in commands  # the pane's own actions are there
        assert not {"Up", "Down", "Page up", "Page down", "First row", "Last row"} & set(commands)
