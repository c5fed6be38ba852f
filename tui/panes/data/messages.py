"""What the Data pane's views and workers tell the pane (and themselves).

A worker's report carries the worker it comes from: the view that owns the worker keeps only
the reports of its current one (a newer run of the task, or a file opened since, makes the
older reports moot) and stops the rest before they reach the pane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from textual.message import Message
from textual.worker import Worker


class TaskProgressed(Message, bubble=False):
    """A view's background task moved on; only the newest report is worth drawing."""

    def __init__(self, worker: Worker, label: str, fraction: Optional[float]):
        super().__init__()
        self.worker = worker
        self.label = label
        self.fraction = fraction

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TaskProgressed) and message.worker is self.worker


class TaskStateChanged(Message):
    """A view's task started or ended: the pane's keys (x, Cancel) may change."""


class FileOpened(Message):
    """A JSON array was read (in a worker: it is parsed whole)."""

    def __init__(self, path: Path, rows=None, error: Optional[str] = None):
        super().__init__()
        self.path = path
        self.rows = rows
        self.error = error


class IndexGrew(Message):
    """The index of the file shown took in more lines; ``done`` once it has all of them."""

    def __init__(self, done: bool):
        super().__init__()
        self.done = done


class FileChosen(Message):
    """A file was chosen from the pane's list of files."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path


class FileValidated(Message):
    def __init__(self, worker: Worker, path: Path, report):
        super().__init__()
        self.worker = worker
        self.path = path
        self.report = report


class TokenizerLoaded(Message):
    def __init__(self, model: str, tokenizer=None, error: Optional[str] = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.error = error


class RowRendered(Message):
    """A row through the chat template and the tokenizer; ``key`` says which row and how."""

    def __init__(self, key: tuple, rendered=None, error: Optional[str] = None):
        super().__init__()
        self.key = key
        self.rendered = rendered
        self.error = error


class TokensCounted(Message):
    def __init__(self, worker: Worker, key: tuple, counts, stats):
        super().__init__()
        self.worker = worker
        self.key = key
        self.counts = counts
        self.stats = stats


class DataConverted(Message):
    def __init__(self, worker: Worker, request: Any, result=None, error: Optional[str] = None,
                 problems: tuple = ()):
        super().__init__()
        self.worker = worker
        self.request = request
        self.result = result
        self.error = error
        self.problems = problems


class GenerationWritten(Message):
    """Rows were appended to ``paths``."""

    def __init__(self, paths: list):
        super().__init__()
        self.paths = paths


class GenerationFinished(Message):
    def __init__(self, worker: Worker, request: Any, result=None, error: Optional[str] = None):
        super().__init__()
        self.worker = worker
        self.request = request
        self.result = result
        self.error = error


class LineReached(Message):
    """A line waited for is indexed (``found``), or the file turned out shorter."""

    def __init__(self, path: Path, line: int, found: bool):
        super().__init__()
        self.path = path
        self.line = line
        self.found = found


class LineTyped(Message):
    """The line number being typed changed; None when typing it ended."""

    def __init__(self, text: Optional[str]):
        super().__init__()
        self.text = text


class LineEntered(Message):
    """A line number was typed and entered: go there."""

    def __init__(self, line: int):
        super().__init__()
        self.line = line


class PathAnswered(Message):
    """A path was typed into the pane's bar; empty when it was closed without an answer."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
