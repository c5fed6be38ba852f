"""The app's progress bars wake it only when told something (the idle-CPU budget of an app
following a quiet run): Textual's own bar refreshes an ETA every second, shown or not."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import ProgressBar

from tunedeck.tui.widgets.progress import ProgressLine


class Bars(App):
    def compose(self) -> ComposeResult:
        yield ProgressLine(total=100, id="ours")
        yield ProgressBar(total=100, show_eta=False, id="textuals")


async def test_a_progress_line_has_no_timer_and_still_shows_its_progress():
    app = Bars()
    async with app.run_test() as pilot:
        ours = app.query_one("#ours", ProgressLine)
        # Textual's bar, as a check that the count below sees the timer it would start.
        assert len(app.query_one("#textuals", ProgressBar)._timers) == 1
        assert len(ours._timers) == 0
        ours.update(progress=40)
        await pilot.pause()
        assert ours.percentage == 0.4
        assert "40%" in str(ours.query_one("#percentage").render())
