"""The line of input in the Data pane's bar, for a path to open."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.widgets import Input

from .messages import PathAnswered


class PromptField(Input):
    """A line of input in the pane's bar, for a path to open.

    In the bar rather than a dialog: closing a dialog redraws the whole screen.
    """

    BINDINGS = [Binding("escape", "close", "Close", id="data-prompt-close", show=False)]

    def ask(self, placeholder: str) -> None:
        self.placeholder = placeholder
        self.value = ""
        self.display = True
        self.focus()

    def action_close(self) -> None:
        self.display = False
        self.post_message(PathAnswered(""))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.display = False
        self.post_message(PathAnswered(event.value.strip()))
