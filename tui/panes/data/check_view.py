"""The Data pane's file-wide views: the validation report and the token statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from tunedeck.core.data import formats as F
from tunedeck.core.data.sources import JSON_ARRAY, TXT
from tunedeck.core.data.validate import FileReport, Problem

from .rows import one_line
from .content import ERROR, WARNING, TaskLine, TextPanel, plural


def problem_text(problem: Problem) -> Content:
    """``FILE:LINE: message``, with the file's name (the pane says which directory)."""
    where = f"{Path(problem.path).name}:{problem.line}" if problem.line > 0 \
        else Path(problem.path).name
    kind = "" if problem.error else "warning: "
    return Content.styled(f"{where}: {kind}{one_line(problem.message)}",
                          ERROR if problem.error else WARNING)


def report_summary(report: FileReport) -> str:
    if report.container == TXT:
        kind = "plain text"
    elif report.format is None:
        kind = "no records in a known format" if report.rows else "no records"
    else:
        kind = F.describe(report.format) + (", JSON array" if report.container == JSON_ARRAY
                                            else "")
    parts = [kind, plural(report.rows, "row"), f"{report.valid_rows:,} valid"]
    parts.append(plural(report.errors, "error") if report.errors else "no errors")
    if report.warnings:
        parts.append(plural(report.warnings, "warning"))
    if len(report.problems) < report.errors + report.warnings:
        parts.append(f"the first {len(report.problems):,} listed")
    if not report.complete:
        parts.append("cancelled: only part of the file was checked")
    return " · ".join(parts)


class ValidationReport(Vertical):
    """``data check`` for the open file: a summary and one ``FILE:LINE: message`` per problem.
    Highlighting a problem shows its row in the list above; selecting it opens the row."""

    DEFAULT_CSS = """
    ValidationReport { height: 1fr; }
    ValidationReport > OptionList, ValidationReport > OptionList:focus {
        height: 1fr;
        border: none;
        padding: 0;
    }
    ValidationReport > #data-check-note { padding: 0 1; color: $text-muted; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.problems: list[Problem] = []

    def compose(self) -> ComposeResult:
        yield TaskLine(id="data-check-task")
        yield Label("select a problem (enter) to open its row", id="data-check-note")
        yield OptionList(id="data-problem-list")

    @property
    def task_line(self) -> TaskLine:
        return self.query_one(TaskLine)

    def clear(self) -> None:
        self.problems = []
        self.query_one(OptionList).clear_options()

    def show(self, report: FileReport) -> None:
        self.problems = list(report.problems)
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(problem_text(p)) for p in self.problems])
        outcome = "failed" if report.errors else ("" if not report.complete else "succeeded")
        self.task_line.finish(report_summary(report), outcome)

    def problem_at(self, index: Optional[int]) -> Optional[Problem]:
        if index is None or not 0 <= index < len(self.problems):
            return None
        return self.problems[index]


class TokenStatsView(Vertical):
    """Token counts of the open file with the model's tokenizer, and a length histogram."""

    DEFAULT_CSS = """
    TokenStatsView { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield TaskLine(id="data-stats-task")
        yield TextPanel(id="data-stats-text")

    @property
    def task_line(self) -> TaskLine:
        return self.query_one(TaskLine)

    @property
    def panel(self) -> TextPanel:
        return self.query_one(TextPanel)
