"""One field of the Hyperparameters form: its name, an editor, and a note beside it."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label

from ...widgets.form_widgets import FieldEditor, FormText
from .messages import FieldEdited


class ConfigField(Horizontal):
    """One field: its name, an editor, and a note beside it (a problem, or a conversion).

    Every editor is a text input (cheap to build, the form has over forty): choices are
    completed from the allowed values as they are typed, and checked like any other value.
    """

    DEFAULT_CSS = """
    ConfigField { height: auto; }
    ConfigField .field-name { width: 26; padding: 0 1; color: $text-muted; }
    ConfigField .editor { width: 1fr; max-width: 60; }
    ConfigField .field-note { width: 1fr; padding: 0 1; color: $text-muted; }
    ConfigField.-invalid .field-note, ConfigField.-invalid .field-name { color: $error; }
    """

    def __init__(self, spec, text: str, locked: bool = False):
        super().__init__(classes="config-field", id=f"field-{spec.name.replace('.', '-')}")
        self.spec = spec
        self.text = text
        self.locked = locked  # no config to edit (the project's did not load)
        self.problem: Optional[str] = None
        self.note = ""

    def compose(self) -> ComposeResult:
        spec = self.spec
        choices = ("true", "false") if spec.kind == "bool" else spec.choices
        suggester = SuggestFromList(choices, case_sensitive=False) if choices else None
        placeholder = " | ".join(choices) if choices else ("optional" if spec.optional else "")
        yield Label(spec.name, classes="field-name")
        yield FieldEditor(self.text, placeholder=placeholder, suggester=suggester, compact=True,
                    classes="editor", disabled=self.locked)
        yield FormText(classes="field-note")

    @property
    def editor(self) -> Input:
        return self.query_one(Input)

    def set_text(self, text: str) -> None:
        """Show ``text`` without reporting it as an edit."""
        self.text = text
        with self.editor.prevent(Input.Changed):
            self.editor.value = text

    def show_problem(self, problem: Optional[str]) -> None:
        if problem != self.problem:
            self.problem = problem
            self.set_class(bool(problem), "-invalid")
            self._show()

    def show_note(self, note: str) -> None:
        if note != self.note:
            self.note = note
            self._show()

    def _show(self) -> None:
        self.query_one(FormText).show(self.problem or self.note)

    @on(Input.Changed)
    def _edited(self, event: Input.Changed) -> None:
        event.stop()
        if event.value != self.text:  # an input reports its first value too: not an edit
            self.text = event.value
            self.post_message(FieldEdited(self.spec.name, self.text))
