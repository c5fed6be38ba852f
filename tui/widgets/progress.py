"""A progress bar that wakes the app only when it is told something.

Textual's ProgressBar starts a once-a-second timer on mount to refresh its ETA. tunedeck's bars
show no ETA (the Chat pane's model load, the evaluation screen, the Data pane's task lines), so
each of those timers only woke the app: five of them, mounted and mostly hidden, every second
of an otherwise idle app (the idle-CPU budget of a quiet run is 0.5 % of a core).
"""

from __future__ import annotations

from textual import events
from textual.widgets import ProgressBar


class ProgressLine(ProgressBar):
    """A ProgressBar without an ETA, and so without its refresh timer."""

    def __init__(self, total: float | None = None, **kwargs) -> None:
        super().__init__(total=total, show_eta=False, **kwargs)

    def on_mount(self, event: events.Mount) -> None:
        event.prevent_default()  # the base class's on_mount is the one that starts the timer
        self.update()
