"""The live log: mlx-lm's own output, as plain text, capped in memory (the full log is on disk)."""

from __future__ import annotations

from typing import Iterable

from textual.widgets import Log

from tunedeck.core.text import log_line

MAX_LINES = 5000


class RunLog(Log):
    DEFAULT_CSS = """
    RunLog { height: 1fr; min-height: 4; border-top: solid $panel; background: $surface; }
    RunLog:focus { border-top: solid $primary; }
    """

    def __init__(self, **kwargs):
        super().__init__(max_lines=MAX_LINES, highlight=False, auto_scroll=True, **kwargs)

    def add_output(self, raw_lines: Iterable[str]) -> None:
        """Lines as the process printed them; one batched write per call, however many."""
        lines = [log_line(raw) for raw in raw_lines]
        if lines:
            self.write_lines(lines)
