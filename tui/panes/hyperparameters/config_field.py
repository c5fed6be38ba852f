"""One field of the Hyperparameters form: its name, an editor, and a note beside it."""

from __future__ import annotations

from typing import Callable, Optional

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Region
from textual.strip import Strip
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label

from ...widgets.covered import covered_lines
from ...widgets.form_widgets import FieldEditor, FormText


class FieldGroup(Vertical):
    """A group of fields under its title."""

    def render_lines(self, crop: Region) -> list[Strip]:
        return covered_lines(self, crop)


class ConfigField(Horizontal):
    """One field: its name, an editor, and a note beside it (a problem, or a conversion).

    Every editor is a text input (cheap to build, the form has over forty): choices are
    completed from the allowed values as they are typed, and checked like any other value.

    An edit reaches the form through ``edited(name, text)``, called while the editor takes the
    key: the note, the estimates and the command then change in the same frame as the editor.
    As a message it came four hops later, after a frame that had drawn the editor alone, and
    the command waited for a second frame of the whole form.
    """

    DEFAULT_CSS = """
    ConfigField { height: auto; }
    ConfigField .field-name { width: 26; padding: 0 1; color: $text-muted; }
    ConfigField .editor { width: 1fr; max-width: 60; }
    ConfigField .field-note { width: 1fr; padding: 0 1; color: $text-muted; }
    ConfigField.-invalid .field-note, ConfigField.-invalid .field-name { color: $error; }
    """

    def __init__(self, spec, text: str, edited: Callable[[str, str], None], locked: bool = False):
        super().__init__(classes="config-field", id=f"field-{spec.name.replace('.', '-')}")
        self.spec = spec
        self.text = text
        self.edited = edited
        self.locked = locked  # no config to edit (the project's did not load)
        self.problem: Optional[str] = None
        self.note = ""
        choices = ("true", "false") if spec.kind == "bool" else spec.choices
        self.editor: Input = FieldEditor(
            text, placeholder=" | ".join(choices) if choices else ("optional" if spec.optional else ""),
            suggester=SuggestFromList(choices, case_sensitive=False) if choices else None,
            compact=True, classes="editor", disabled=locked)
        self.note_text = FormText(classes="field-note")

    def render_lines(self, crop: Region) -> list[Strip]:
        return covered_lines(self, crop)  # its name, editor and note

    def compose(self) -> ComposeResult:
        yield Label(self.spec.name, classes="field-name")
        yield self.editor
        yield self.note_text

    def on_mount(self) -> None:
        self.watch(self.editor, "value", self._value_changed, init=False)

    def set_text(self, text: str) -> None:
        """Show ``text`` without reporting it as an edit."""
        self.text = text
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
        self.note_text.show(self.problem or self.note)

    def _value_changed(self, value: str) -> None:
        if value != self.text:  # not a value the form set itself
            self.text = value
            self.edited(self.spec.name, value)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()  # the edit went to the form already: no need to carry it up the tree
