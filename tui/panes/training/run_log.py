"""The live log: mlx-lm's own output, as plain text, capped in memory (the full log is on disk)."""

from __future__ import annotations

from typing import Iterable

from rich.style import Style
from textual.geometry import Size
from textual.reactive import Reactive
from textual.strip import Strip
from textual.widgets import Log

from tunedeck.core.text import log_line

MAX_LINES = 5000


class RunLog(Log):
    DEFAULT_CSS = """
    RunLog { height: 1fr; min-height: 4; border-top: solid $panel; background: $surface; }
    RunLog:focus { border-top: solid $primary; }
    """

    # Lines written change the log's length, not its place on the screen. Textual's Log takes a
    # new length for a new layout of the whole screen: 20 ms of CPU (load 10) in every update of
    # a live run, which delayed the plot and the status line behind it. Here the length only
    # moves the scrollbars (a scrollbar that appears or goes still lays the screen out).
    virtual_size = Reactive(Size(0, 0), layout=False)

    def __init__(self, **kwargs):
        super().__init__(max_lines=MAX_LINES, highlight=False, auto_scroll=True, **kwargs)

    def on_mount(self) -> None:
        # Follows the newest line through changes of its height too: the status line wrapping
        # to a second line or the health line showing shrinks the log, which left it a line
        # short of the end, and Log's auto_scroll follows only a log already at its end, so at
        # 80x24 it stopped following for good. Anchored, a layout keeps it at the end until the
        # user scrolls up; scrolling back to the end anchors it again.
        self.anchor()

    def watch_virtual_size(self, size: Size) -> None:
        self._scroll_update(size)

    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        # Textual's Log keeps a line it rendered only while text is selected (its test is the
        # wrong way round), so each report, which scrolls the log by a line, rendered every
        # visible line again: a tenth of the UI thread's time on a fast run. Kept here; the Log
        # itself forgets them when a line changes, its styles change or a selection starts.
        line = super()._render_line_strip(y, rich_style)
        if self.text_selection is None:
            self._render_line_cache[y] = line
        return line

    def add_output(self, raw_lines: Iterable[str]) -> None:
        """Lines as the process printed them; one batched write per call, however many."""
        lines = [log_line(raw) for raw in raw_lines]
        if lines:
            self.write_lines(lines)
