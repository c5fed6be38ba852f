"""The Problems view of the Data pane: ``data check`` of the open file, run by the view."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option
from textual.worker import Worker, get_current_worker

from tunedeck.core.data import formats as F
from tunedeck.core.data.sources import JSON_ARRAY, TXT
from tunedeck.core.data.file_report import FileReport, Problem
from tunedeck.core.data.validate import validate_file

from tunedeck.core.text import plural

from .background import TaskView, background_priority, in_own_thread
from .content import ERROR, WARNING
from .messages import FileValidated
from .rows import one_line
from .task_line import TaskLine


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


class ValidationReport(TaskView, Vertical):
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

    def check(self, path: Path, features: dict) -> None:
        """Check ``path`` in the background (a check running already is cancelled)."""
        self.worker = self._check(path, features)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-check")
    def _check(self, path: Path, features: dict) -> None:
        worker = get_current_worker()
        # In a thread of its own: the lowered priority must not stay with a pool thread
        # that later renders rows.
        report = in_own_thread(self._validate, path, features, worker)
        self.post_message(FileValidated(worker, path, report))

    def _validate(self, path: Path, features: dict, worker: Worker) -> FileReport:
        background_priority()
        return validate_file(path, progress=self.reporter(worker),
                             cancel=worker.cancelled_event, features=features)

    def on_file_validated(self, message: FileValidated) -> None:
        self.ends_here(message)  # unless a newer check replaced this one

    def clear(self) -> None:
        """A file is opened: a check running is stopped and its report will be ignored."""
        self.cancel_task()
        self.worker = None
        self.problems = []
        self.query_one(OptionList).clear_options()

    def show(self, report: FileReport, flags: list) -> None:
        """``report``, with the quality ``flags`` of answers generated into its file."""
        if flags:
            report = dataclasses.replace(report, warnings=report.warnings + len(flags),
                                         problems=sorted(report.problems + flags,
                                                         key=lambda p: p.line))
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
