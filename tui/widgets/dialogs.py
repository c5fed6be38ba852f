"""Small modal questions: confirm a destructive action, ask for a number or a path."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class DialogBox(Vertical):
    """The box every dialog draws its question, fields and buttons in."""

    DEFAULT_CSS = """
    DialogBox { width: 70; max-width: 95%; height: auto; padding: 1 2; border: thick $primary; background: $surface; }
    DialogBox .question { width: 1fr; margin-bottom: 1; }
    DialogBox .problem { color: $error; }
    DialogBox .buttons { height: auto; align-horizontal: right; }
    DialogBox Button { margin-left: 2; }
    """


class Confirm(ModalScreen[bool]):
    DEFAULT_CSS = "Confirm { align: center middle; }"
    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel", id="cancel")]

    def __init__(self, question: str, confirm: str = "OK"):
        super().__init__()
        self.question = question
        self.confirm_label = confirm

    def compose(self) -> ComposeResult:
        with DialogBox():
            yield Label(Text(self.question), classes="question")
            with Horizontal(classes="buttons"):
                yield Button(self.confirm_label, variant="error", id="confirm")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # the safe choice is the default one

    @on(Button.Pressed)
    def _answered(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")


class Ask(ModalScreen[Optional[str]]):
    """One line of text; ``check`` returns what is wrong with it, or None."""

    DEFAULT_CSS = "Ask { align: center middle; }"

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="cancel")]

    def __init__(self, question: str, value: str = "", check=lambda text: None):
        super().__init__()
        self.question = question
        self.value = value
        self.check = check

    def compose(self) -> ComposeResult:
        with DialogBox():
            yield Label(Text(self.question), classes="question")
            yield Input(self.value, id="answer")
            yield Label("", classes="problem")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        problem = self.check(event.value)
        if problem:
            self.query_one(".problem", Label).update(Text(problem))
        else:
            self.dismiss(event.value)


class AskIterations(Ask):
    def __init__(self, question: str, minimum: int):
        def check(text: str) -> Optional[str]:
            try:
                value = int(text)
            except ValueError:
                return "expected a whole number of iterations"
            return None if value >= minimum else f"must be at least {minimum}"

        super().__init__(question, str(minimum), check)

