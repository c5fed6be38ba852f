"""A background task's line in a Data pane view: what it is doing, then how it went."""

from __future__ import annotations

from typing import Optional

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Label, ProgressBar

from .rows import one_line
from ...widgets.progress import ProgressLine


class TaskLine(Horizontal):
    """What a background task is doing: a label and a progress bar, then its outcome."""

    DEFAULT_CSS = """
    TaskLine { height: auto; padding: 0 1; }
    TaskLine > Label { width: 1fr; height: auto; }
    TaskLine > ProgressBar { width: 32; display: none; }
    TaskLine.-running > ProgressBar { display: block; }
    TaskLine.-failed > Label { color: $text-error; }
    TaskLine.-succeeded > Label { color: $text-success; }
    """

    def compose(self) -> ComposeResult:
        yield Label()
        # A bar without a total animates 15 times a second even while hidden: it has one only
        # while a task of unknown length runs.
        yield ProgressLine(total=100)

    @property
    def running(self) -> bool:
        return self.has_class("-running")

    @property
    def text(self) -> str:
        return str(self.query_one(Label).visual)

    def progress(self, label: str, fraction: Optional[float]) -> None:
        text = one_line(label)
        widget = self.query_one(Label)
        # Progress comes ten times a second, for a view out of sight too: a text that still fits
        # the one line it has is repainted without a layout of the whole screen, and so is the
        # line of a view not on screen (showing the view lays the screen out anyway). A layout
        # for each report of the check, whose view is hidden while rows are looked at, was
        # what made a jump to a line slow while the check ran.
        same_height = self.running and widget.size.height == 1 and len(text) <= widget.size.width
        self.set_classes("-running")
        widget.update(Content(text), layout=not same_height and self.is_on_screen)
        bar = self.query_one(ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=100 * fraction)

    def finish(self, text: str, outcome: str = "") -> None:
        """``outcome``: "succeeded", "failed" or "" (neutral)."""
        self.set_classes(f"-{outcome}" if outcome else "")
        self.query_one(Label).update(Content(one_line(text)))
        self.query_one(ProgressBar).update(total=100, progress=0)
