"""The lines of the Data pane's forms (Convert, Generate): a label and its field on each line,
the labels in a column of their own, and the paths typed taken from the project directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from textual.containers import Horizontal
from textual.widgets import Input, Label


class FieldRow(Horizontal):
    """One line of a form: its label, then its field (or, with ``-numbers``, several short
    fields, each after a label as wide as its words)."""

    DEFAULT_CSS = """
    FieldRow { height: 1; }
    FieldRow > Label { width: 12; padding: 0 1; color: $text-muted; }
    FieldRow > Input { width: 1fr; }
    FieldRow.-numbers > Label { width: auto; }
    """


class ActionRow(Horizontal):
    """The last line of a form: a note or a box to tick, then the button that runs it."""

    DEFAULT_CSS = """
    ActionRow { height: 1; }
    ActionRow > Label { width: 1fr; padding: 0 1; color: $text-muted; }
    ActionRow > Checkbox { width: 1fr; }
    ActionRow > Button { min-width: 20; }
    """


def text_row(label: str, value: str, placeholder: str, field_id: str,
             row_id: Optional[str] = None) -> FieldRow:
    return FieldRow(Label(label), Input(value, placeholder=placeholder, compact=True, id=field_id),
                    id=row_id)


def choice_row(*fields: tuple) -> FieldRow:
    """Fields chosen from a list (or ticked) on one line: ``fields`` are (label, widget)."""
    widgets: list = []
    for label, field in fields:
        widgets += [Label(label), field]
    return FieldRow(*widgets)


def numbers_row(fields: Sequence[tuple], row_id: str) -> FieldRow:
    """Short fields on one line: ``fields`` are (label, value, id)."""
    widgets: list = []
    for label, value, field_id in fields:
        widgets += [Label(label), Input(value, compact=True, id=field_id)]
    return FieldRow(*widgets, classes="-numbers", id=row_id)


def typed_path(text: str, base: Optional[Path]) -> Path:
    """A path as typed in a form: from ``base`` (the project directory) when relative."""
    path = Path(text).expanduser()
    return path if path.is_absolute() or base is None else base / path
