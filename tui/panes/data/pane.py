"""The Data pane: browse, check, measure and convert the project's datasets before training.

Rows come through a line index built in the background (rows.py), so the first rows of a
1 GB file show at once and any line can be reached. Below the row list, the row as raw JSON, as
the chat template renders it, or token by token with what carries loss; or, for the whole file,
the validation report, the token statistics, and a conversion form. Everything slow (indexing,
validation, the tokenizer, rendering, counting, converting) runs in thread workers that only
post messages; validation, counting and conversion can be cancelled.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, ContentSwitcher, Input, Label, OptionList, Select
from textual.worker import Worker, WorkerState

from tunedeck.core.data import formats as F
from tunedeck.core.data.convert import ConversionCancelled, InvalidData, convert
from tunedeck.core.data.feature_keys import features_of
from tunedeck.core.data.line_index import IndexCancelled
from tunedeck.core.data.sources import DATA_SUFFIXES, JSON_ARRAY, TXT, sniff_container
from tunedeck.core.data.tokens import (DEFAULT_MAX_SEQ_LENGTH, count_tokens, load_tokenizer,
                                       render_row, token_stats)
from tunedeck.core.data.validate import SPLIT_NAMES, validate_file
from tunedeck.core.errors import BadInput, WorkFailed

from .convert_form import ConversionRequest, ConvertForm
from .generate_form import GenerateForm, GenerationRequest
from .row_list import RowList
from .check_view import TokenStatsView, ValidationReport
from .rows import ArrayRows, LineRows, one_line
from .content import (MUTED, TextPanel, issue_lines, lines, plural, raw_content,
                         stats_content, template_content, token_content)
from ..hyperparameters.pane import default_config

# Rows waited for before the list first shows: more than a screen, within the index's first
# chunk, so the wait is about a millisecond even on a 1 GB file.
FIRST_ROWS = 200
FIRST_ROWS_WAIT_S = 0.1   # past this (a slow disk), the list fills in as the index grows
INDEX_POLL_S = 0.1
BACKGROUND_NICE = 10
VIEWS = (("raw", "r", "Raw"), ("template", "t", "Template"), ("tokens", "k", "Tokens"),
         ("problems", "p", "Problems"), ("stats", "s", "Stats"), ("convert", "c", "Convert"),
         ("generate", "n", "Generate"))
ROW_VIEWS = ("raw", "template", "tokens")
TOKENIZER_VIEWS = ("template", "tokens", "stats")
SITUATIONAL_ACTIONS = ("toggle_mask_prompt", "cancel", "convert", "generate")  # check_action
FORMS = ("convert", "generate")


def background_priority() -> None:
    """Lower the calling thread's priority, and that of the processes it starts.

    Validating a big file takes every core (worker processes), right when the user starts to
    look at its rows; at a lower priority it leaves the app's redraws their share. On Linux a
    thread has its own nice value, which the processes it forks inherit; elsewhere the call
    would lower the whole app, so it is not made.
    """
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except OSError:
            pass  # not allowed here: the check runs at the app's priority


@contextmanager
def mlx_streams_released():
    """Free, when the work is done, the MLX streams this thread made.

    MLX keeps streams per thread, and they must be freed by that thread before the interpreter
    shuts down, or the app aborts as it exits ("terminate called without an active
    exception"). Loading a tokenizer imports MLX; rendering and counting go through mlx-lm.
    """
    try:
        yield
    finally:
        mx = sys.modules.get("mlx.core")
        if mx is not None:
            mx.clear_streams()


# -- what the workers report ----------------------------------------------------------------------
class FileOpened(Message):
    def __init__(self, path: Path, rows=None, error: Optional[str] = None):
        super().__init__()
        self.path = path
        self.rows = rows
        self.error = error


class TaskProgressed(Message):
    """A background task moved on; only the newest report of a task is worth drawing."""

    def __init__(self, task: str, label: str, fraction: Optional[float]):
        super().__init__()
        self.task = task
        self.label = label
        self.fraction = fraction

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TaskProgressed) and message.task == self.task


class FileValidated(Message):
    def __init__(self, path: Path, report, cancel: threading.Event):
        super().__init__()
        self.path = path
        self.report = report
        self.cancel = cancel


class TokenizerLoaded(Message):
    def __init__(self, model: str, tokenizer=None, error: Optional[str] = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.error = error


class RowRendered(Message):
    def __init__(self, key: tuple, rendered=None, error: Optional[str] = None):
        super().__init__()
        self.key = key
        self.rendered = rendered
        self.error = error


class TokensCounted(Message):
    def __init__(self, key: tuple, counts, stats, cancel: threading.Event):
        super().__init__()
        self.key = key
        self.counts = counts
        self.stats = stats
        self.cancel = cancel


class DataConverted(Message):
    def __init__(self, request: ConversionRequest, cancel: threading.Event, result=None,
                 error: Optional[str] = None, problems: tuple = ()):
        super().__init__()
        self.request = request
        self.cancel = cancel
        self.result = result
        self.error = error
        self.problems = problems


class GenerationWritten(Message):
    """Rows were appended to ``paths``."""

    def __init__(self, paths: list):
        super().__init__()
        self.paths = paths


class GenerationFinished(Message):
    def __init__(self, request: GenerationRequest, cancel: threading.Event, result=None,
                 error: Optional[str] = None):
        super().__init__()
        self.request = request
        self.cancel = cancel
        self.result = result
        self.error = error


class LineReached(Message):
    def __init__(self, path: Path, line: int, found: bool):
        super().__init__()
        self.path = path
        self.line = line
        self.found = found


class PromptField(Input):
    """A line of input in the pane's bar, for a path to open.

    In the bar rather than a dialog: closing a dialog redraws the whole screen.
    """

    BINDINGS = [Binding("escape", "close", "Close", id="data-prompt-close", show=False)]

    class Answered(Message):
        """``text`` was entered; empty when the field was closed without an answer."""

        def __init__(self, text: str):
            super().__init__()
            self.text = text

    def ask(self, placeholder: str) -> None:
        self.placeholder = placeholder
        self.value = ""
        self.display = True
        self.focus()

    def action_close(self) -> None:
        self.display = False
        self.post_message(self.Answered(""))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.display = False
        self.post_message(self.Answered(event.value.strip()))


# -- the pane -------------------------------------------------------------------------------------
class DataPane(Vertical):
    PANE_TITLE = "Data"
    DEFAULT_CSS = """
    DataPane #data-bar { height: 1; }
    DataPane #data-file { width: 32; }
    DataPane #data-summary { width: 1fr; padding: 0 1; color: $text-muted; }
    DataPane #data-prompt { width: 1fr; display: none; }
    DataPane #data-rows { height: 1fr; min-height: 3; }
    DataPane #data-views-bar { width: 1fr; height: 1; padding: 0 1; background: $panel; }
    DataPane #data-views { height: 1fr; min-height: 6; }
    DataPane.-form #data-views { height: 2fr; }
    """
    # Actions first, views after: at 80 columns the Footer shows the first few, and the view
    # keys are also on the bar above the views.
    BINDINGS = [
        Binding("g", "go_to_line", "Go to line", id="data-go-to-line"),
        Binding("o", "open_file", "Open", id="data-open-file"),
        Binding("f", "choose_file", "File", id="data-choose-file", show=False),
        Binding("m", "toggle_mask_prompt", "Mask prompt", id="data-toggle-mask-prompt"),
        Binding("x", "cancel", "Cancel", id="data-cancel"),
        Binding("ctrl+r", "convert", "Run conversion", id="data-run-conversion"),
        Binding("ctrl+r", "generate", "Generate", id="data-run-generation"),
        Binding("r", "view('raw')", "Raw", id="data-view-raw"),
        Binding("t", "view('template')", "Template", id="data-view-template"),
        Binding("k", "view('tokens')", "Tokens", id="data-view-tokens"),
        Binding("p", "view('problems')", "Problems", id="data-view-problems"),
        Binding("s", "view('stats')", "Stats", id="data-view-stats"),
        Binding("c", "view('convert')", "Convert", id="data-view-convert"),
        Binding("n", "view('generate')", "Generate", id="data-view-generate"),
    ]

    def __init__(self, project: Optional[Path], **kwargs):
        super().__init__(**kwargs)
        self.project = Path(project) if project else None
        self.config_problem: Optional[str] = None
        try:
            config = default_config(self.project)
            if self.project is not None:
                config = config.resolve_paths(self.project)
        except BadInput as exc:
            config, self.config_problem = None, str(exc)
        data = Path(config.data) if config and config.data else None
        if data is None and self.project is not None:
            data = self.project / "data"
        self.data_dir: Optional[Path] = data if data is not None and data.is_dir() else None
        self.model: Optional[str] = config.model if config else None
        self.mask_prompt: bool = bool(config.mask_prompt) if config else False
        # The columns mlx-lm is told to read (prompt_feature & co.), as `data check` reads them.
        try:
            self.feature_keys = F.FeatureKeys.of(features_of(config) if config else None)
        except ValueError as exc:
            self.feature_keys, self.config_problem = F.DEFAULT_KEYS, str(exc)
        self.max_seq_length: int = (config.max_seq_length if config else None) \
            or DEFAULT_MAX_SEQ_LENGTH
        self.view = "raw"
        self.path: Optional[Path] = None   # the file shown
        self.rows = None                   # its rows (rows.py), once opened
        self.row: Optional[int] = None     # the row under the cursor
        self.extra_files: list[Path] = []  # opened or written here, beside the data dir's
        self.report = None                 # the open file's validation report
        self.tokenizer: Any = None
        self.tokenizer_error: Optional[str] = None
        self._tokenizer_loading = False
        self._rendered: dict[tuple, Any] = {}   # the current row, rendered (or why not)
        self._stats: Optional[TokensCounted] = None
        self._cancels: dict[str, threading.Event] = {}
        self._ticker: Optional[Timer] = None
        self._shown_actions: tuple = ()
        self.flags: dict[Path, list] = {}   # quality flags of generated answers, by file
        self._focus_when_composed = False

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        files = self.files()
        with Horizontal(id="data-bar"):
            yield Select(self._file_options(files), value=files[0] if files else Select.NULL,
                         allow_blank=not files, compact=True, prompt="no data file",
                         id="data-file")
            yield Label("", id="data-summary")
            yield PromptField(compact=True, id="data-prompt")
        yield RowList(id="data-rows")
        yield Label("", id="data-views-bar")
        with ContentSwitcher(initial="data-raw", id="data-views"):
            yield TextPanel(id="data-raw")
            yield TextPanel(id="data-template")
            yield TextPanel(id="data-tokens")
            yield ValidationReport(id="data-problems")
            yield TokenStatsView(id="data-stats")
            yield ConvertForm(inputs=files[:1], out_dir=self._default_out_dir(files[:1]),
                              id="data-convert")
            yield GenerateForm(model=self.model, prompts=None,
                               out=self.project / "generated" if self.project else None,
                               id="data-generate")

    def on_mount(self) -> None:
        if self._focus_when_composed:
            self.query_one(RowList).focus()
        if self.config_problem:
            self.notify(self.config_problem, title="tunedeck.toml", severity="error", timeout=12)
        self._show_views_bar()
        files = self.files()
        if files:
            self.open_file(files[0])
        else:
            where = self.data_dir or (self.project / "data" if self.project else "the project")
            self._summary(f"no data files in {where}: open one (o) or convert one (c)")

    def on_unmount(self) -> None:
        for cancel in self._cancels.values():
            cancel.set()
        if self.rows is not None:
            self.rows.close()

    def focus_main(self) -> None:
        # The App can show the pane between its mounting and the composing of its children
        # (it is built after the first frame): the row list takes the focus once it exists.
        rows = self.query(RowList)
        if rows:
            rows.first().focus()
        else:
            self._focus_when_composed = True

    def files(self) -> list[Path]:
        """The data dir's files, train/valid/test first (mlx-lm's order), then the others."""
        found = []
        if self.data_dir is not None:
            order = {f"{name}.jsonl": i for i, name in enumerate(SPLIT_NAMES)}
            found = sorted((p for p in self.data_dir.iterdir()
                            if p.is_file() and p.suffix.lower() in DATA_SUFFIXES),
                           key=lambda p: (order.get(p.name, len(order)), p.name))
        return found + [p for p in self.extra_files if p not in found]

    def _file_options(self, files: list[Path]) -> list:
        def label(path: Path) -> str:
            for base in (self.data_dir, self.project):
                if base is not None and path.is_relative_to(base):
                    return one_line(str(path.relative_to(base)))
            return one_line(str(path))
        return [(label(p), p) for p in files]

    def _default_out_dir(self, inputs: list[Path]) -> Optional[Path]:
        """A directory next to the first input, named after it (never the input's own dir)."""
        if not inputs:
            return self.project / "data" if self.project else None
        first = inputs[0]
        return first.parent / f"{first.stem}-mlx"

    def _summary(self, text: str) -> None:
        self.query_one("#data-summary", Label).update(Content(one_line(text)))

    def _show_views_bar(self) -> None:
        parts = []
        for view, key, title in VIEWS:
            if view == "problems" and self.report is not None and self.report.errors:
                title += f" {self.report.errors:,}"
            active = view == self.view
            parts += [(key, "bold $footer-key-foreground"),
                      (f" {title} ", "bold reverse $text-accent" if active else ""), " "]
        parts.append((f"  mask_prompt {'on' if self.mask_prompt else 'off'} · "
                      f"max_seq_length {self.max_seq_length:,}", MUTED))
        self.query_one("#data-views-bar", Label).update(Content.assemble(*parts))

    def _file_summary(self) -> None:
        rows, path = self.rows, self.path
        if rows is None or path is None:
            return
        parts = [path.name]
        if rows.container == TXT:
            parts.append("plain text")
        elif rows.file_format:
            parts.append(rows.file_format)
        if rows.done:
            parts.append(plural(rows.known, "line" if rows.container != JSON_ARRAY
                                else "record"))
            if not rows.complete:
                parts.append("indexing cancelled")
        else:
            parts.append(f"{rows.known:,} lines so far, indexing {rows.fraction:.0%}")
        if self.report is not None and self.report.path == path:
            parts.append(plural(self.report.errors, "error") if self.report.errors else
                         ("checked: ok" if self.report.complete else "check cancelled"))
        self._summary(" · ".join(parts))

    # -- opening files ------------------------------------------------------------------------
    def open_file(self, path: Path) -> None:
        """Show ``path``: its rows as soon as the first are indexed, then its check."""
        path = Path(path)
        if path not in self.files():
            self._add_files([path])
        for task in ("check", "stats"):
            self._cancel(task)
        if self.rows is not None:
            self.rows.close()
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.path, self.rows, self.row, self.report, self._stats = path, None, None, None, None
        self._rendered.clear()
        self.query_one(ValidationReport).clear()
        self.query_one(RowList).show_source(None)
        self._summary(f"{path.name} · opening…")
        select = self.query_one("#data-file", Select)
        if select.value != path:
            with select.prevent(Select.Changed):
                select.value = path
        try:
            container = sniff_container(path)
        except OSError as exc:
            self._summary(f"{path}: {exc.strerror or exc}")
            return
        if container == JSON_ARRAY:
            self._open_array(path)  # parsed whole, as mlx-lm and the converters do
            return
        # Here, not in a worker: the first rows of any file are indexed within a millisecond
        # or two, and showing them in the same frame spares a round trip through the event
        # loop, which is slow while the index thread competes with it for the interpreter.
        try:
            rows = LineRows.open(path, container, FIRST_ROWS, FIRST_ROWS_WAIT_S,
                                 self.feature_keys)
        except OSError as exc:
            self._summary(f"{path}: {exc.strerror or exc}")
            return
        self._rows_opened(rows)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-open")
    def _open_array(self, path: Path) -> None:
        try:
            rows = ArrayRows.open(path, self.feature_keys)
        except OSError as exc:
            self.post_message(FileOpened(path, error=f"{path}: {exc.strerror or exc}"))
            return
        self.post_message(FileOpened(path, rows))

    @on(FileOpened)
    def _file_opened(self, message: FileOpened) -> None:
        if message.path != self.path:
            return  # the user has left that file already
        if message.error:
            self._summary(message.error)
        else:
            self._rows_opened(message.rows)

    def _rows_opened(self, rows) -> None:
        self.rows = rows
        self.query_one(RowList).show_source(self.rows)
        self._file_summary()
        if self.rows.done:
            self._check(self.path, self._new_cancel("check"))
        else:
            # Validation waits for the index: it takes every core for a big file, and the
            # index (which any jump needs) is the quicker of the two.
            self._ticker = self.set_interval(INDEX_POLL_S, self._index_progressed)
            self.query_one(ValidationReport).task_line.progress("waiting for the index", None)
        if self.view == "stats":
            self._refresh_view()

    def _index_progressed(self) -> None:
        rows = self.rows
        if rows is None:
            if self._ticker is not None:
                self._ticker.stop()
            return
        self.query_one(RowList).grow()
        self._file_summary()
        if rows.done and self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
            self._check(self.path, self._new_cancel("check"))

    @on(Select.Changed, "#data-file")
    def _file_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL and event.value != self.path:
            self.open_file(event.value)
            self.query_one(RowList).focus()

    def _add_files(self, paths: list[Path]) -> None:
        for path in paths:
            if path not in self.extra_files:
                self.extra_files.append(path)
        select = self.query_one("#data-file", Select)
        with select.prevent(Select.Changed):
            select.set_options(self._file_options(self.files()))
            if self.path in self.files():
                select.value = self.path

    def action_choose_file(self) -> None:
        select = self.query_one("#data-file", Select)
        select.focus()
        select.action_show_overlay()

    def action_open_file(self) -> None:
        self.query_one(PromptField).ask("a data file to open (.jsonl .json .txt), then Enter; "
                                        "Escape to cancel")

    def _open_answered(self, text: str) -> None:
        path = self._resolve(text)
        if not path.is_file():
            self.notify(f"{path}: no such file", severity="warning")
            return
        self.open_file(path)
        self.query_one(ConvertForm).set_inputs([path])
        self.query_one(ConvertForm).set_out_dir(self._default_out_dir([path]))

    @on(PromptField.Answered)
    def _prompt_answered(self, message: PromptField.Answered) -> None:
        self.query_one(RowList).focus()
        if message.text:
            self._open_answered(message.text)

    def _resolve(self, text: str) -> Path:
        path = Path(text.strip()).expanduser()
        if not path.is_absolute() and self.project is not None and (self.project / path).exists():
            path = self.project / path
        return path.absolute()

    # -- rows and views -----------------------------------------------------------------------
    @on(RowList.RowHighlighted)
    def _row_highlighted(self, message: RowList.RowHighlighted) -> None:
        self._show_row_at(message.row)

    def _show_row_at(self, row: int) -> None:
        if self.rows is None or not self.rows.known or row == self.row:
            return
        self.row = row
        if self.view in ROW_VIEWS:
            self._refresh_view()

    def action_view(self, view: str) -> None:
        self.view = view
        self.query_one(ContentSwitcher).current = f"data-{view}"
        self.set_class(view in FORMS, "-form")
        self._show_views_bar()
        self._refresh_view()
        if view == "problems":
            problems = self.query_one("#data-problem-list", OptionList)
            problems.focus()
            if problems.highlighted is None and problems.option_count:
                problems.highlighted = 0
        elif view == "convert":
            self.query_one(ConvertForm).focus_first()
        elif view == "generate":
            self.query_one(GenerateForm).focus_first()
        else:
            self.query_one(RowList).focus()
        self._update_bindings()

    def _refresh_view(self) -> None:
        view = self.view
        if view in ROW_VIEWS:
            self._show_row(view)
        elif view == "stats":
            self._show_stats()

    def _detail(self):
        if self.rows is None or self.row is None or self.row >= self.rows.known:
            return None
        return self.rows.detail(self.row)

    def _show_row(self, view: str) -> None:
        panel = self.query_one(f"#data-{view}", TextPanel)
        detail = self._detail()
        if detail is None:
            panel.show(Content.styled("no row", MUTED))
            return
        if view == "raw":
            panel.show(*raw_content(detail, self.path.name))
            return
        why = self._why_not_tokenized(detail)
        if why is not None:
            panel.show(lines(Content.styled(f"{self.path.name}:{detail.line}", MUTED), why))
            return
        mask = self.mask_prompt and detail.format != F.TEXT
        key = (self.path, self.row, mask, self.max_seq_length)
        done = self._rendered.get(key)
        where = f"{self.path.name}:{detail.line}"
        if done is None:
            panel.show(Content.styled(f"{where}: rendering…", MUTED))
            self._render_tokens(key, detail.record, self.tokenizer, mask, self.max_seq_length)
        elif done.error:
            panel.show(lines(Content.styled(where, MUTED), *issue_lines([(True, done.error)])))
        elif view == "template":
            panel.show(*template_content(done.rendered, self.model or "", mask,
                                         self.max_seq_length, detail.format, where))
        else:
            panel.show(*token_content(done.rendered, mask, self.max_seq_length, where))

    def _why_not_tokenized(self, detail) -> Optional[Content]:
        """Why this row has no template or tokens to show, or None when it has."""
        if self.rows.container == TXT:
            return Content("plain text: convert it (c) into text rows to see their tokens")
        if detail.record is None:
            return lines(Content("not a record mlx-lm can read:"), *issue_lines(detail.issues))
        if detail.format not in F.MLX_FORMATS:
            return Content(f"{F.describe(detail.format, self.feature_keys)} records are not "
                           "read by mlx-lm: "
                           "convert them (c) to see what it would train on")
        if not self.model:
            return Content("no model: set `model` in tunedeck.toml to see tokens")
        if self.tokenizer_error:
            return lines(*issue_lines([(True, self.tokenizer_error)]))
        if self.tokenizer is None:
            self._load_tokenizer_once()
            return Content.styled(f"loading the tokenizer of {self.model}…", MUTED)
        return None

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-render")
    def _render_tokens(self, key: tuple, record, tokenizer, mask: bool,
                       max_seq_length: int) -> None:
        try:
            with mlx_streams_released():
                rendered = render_row(record, tokenizer, mask_prompt=mask,
                                      max_seq_length=max_seq_length, keys=self.feature_keys)
        except BadInput as exc:
            self.post_message(RowRendered(key, error=str(exc)))
        else:
            self.post_message(RowRendered(key, rendered))

    @on(RowRendered)
    def _row_rendered(self, message: RowRendered) -> None:
        # Only the row under the cursor is kept: the key says which row the result is for.
        self._rendered = {message.key: message}
        if self.view in ("template", "tokens") and message.key[:2] == (self.path, self.row):
            self._refresh_view()

    def action_toggle_mask_prompt(self) -> None:
        self.mask_prompt = not self.mask_prompt
        self._show_views_bar()
        self._refresh_view()

    # -- the tokenizer ------------------------------------------------------------------------
    def _load_tokenizer_once(self) -> None:
        if not self._tokenizer_loading and self.tokenizer is None and self.model:
            self._tokenizer_loading = True
            self._load_tokenizer(self.model)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-tokenizer")
    def _load_tokenizer(self, model: str) -> None:
        try:
            with mlx_streams_released():
                tokenizer = load_tokenizer(model, progress=self._progress("tokenizer"))
        except BadInput as exc:
            self.post_message(TokenizerLoaded(model, error=str(exc)))
        else:
            self.post_message(TokenizerLoaded(model, tokenizer))

    @on(TokenizerLoaded)
    def _tokenizer_loaded(self, message: TokenizerLoaded) -> None:
        self._tokenizer_loading = False
        self.tokenizer, self.tokenizer_error = message.tokenizer, message.error
        self._refresh_view()

    # -- background tasks ---------------------------------------------------------------------
    def _new_cancel(self, task: str) -> threading.Event:
        self._cancel(task)
        self._cancels[task] = event = threading.Event()
        self._update_bindings()
        return event

    def _cancel(self, task: str) -> None:
        """Ask ``task`` to stop; its event stays until it reports (cancelled) or is replaced."""
        event = self._cancels.get(task)
        if event is not None:
            event.set()

    def _task_running(self, task: str) -> bool:
        event = self._cancels.get(task)
        return event is not None and not event.is_set()

    def _task_done(self, task: str, cancel: threading.Event) -> bool:
        """Forget ``task``'s cancel event; False when a newer run of the task replaced it."""
        if self._cancels.get(task) is cancel:
            del self._cancels[task]
            self._update_bindings()
            return True
        return False

    def _progress(self, task: str):
        def report(label: str, fraction: Optional[float]) -> None:
            self.post_message(TaskProgressed(task, label, fraction))
        return report

    @on(TaskProgressed)
    def _task_progressed(self, message: TaskProgressed) -> None:
        if message.task == "check" and self._task_running("check"):
            self.query_one(ValidationReport).task_line.progress(message.label, message.fraction)
        elif message.task == "stats" and self._task_running("stats"):
            self.query_one(TokenStatsView).task_line.progress(message.label, message.fraction)
        elif message.task == "convert" and self._task_running("convert"):
            self.query_one(ConvertForm).task_line.progress(message.label, message.fraction)
        elif message.task == "generate" and self._task_running("generate"):
            self.query_one(GenerateForm).task_line.progress(message.label, message.fraction)
        elif message.task == "tokenizer" and self._tokenizer_loading:
            text = Content.styled(one_line(message.label), MUTED)
            for view in ("template", "tokens"):
                if self.view == view:
                    self.query_one(f"#data-{view}", TextPanel).show(text)

    def _update_bindings(self) -> None:
        """Ask for the footer's keys again only when one of this pane's comes or goes: working
        out the screen's active keys costs more than most of what the keys here do."""
        shown = tuple(self.check_action(action, ()) for action in SITUATIONAL_ACTIONS)
        if shown != self._shown_actions:
            self._shown_actions = shown
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if action == "toggle_mask_prompt":
            return self.view in TOKENIZER_VIEWS
        if action == "cancel":
            return any(self._task_running(task) for task in list(self._cancels)) or (
                self.rows is not None and not self.rows.done)
        if action in FORMS:
            return self.view == action
        return True

    def action_cancel(self) -> None:
        """Stop the work of the view shown; in the row views, the indexing of a big file."""
        task = {"problems": "check", "stats": "stats", "convert": "convert",
                "generate": "generate"}.get(self.view)
        if task is not None:
            self._cancel(task)
        elif self.rows is not None and not self.rows.done:
            self.rows.cancel()
        self._update_bindings()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Unexpected failures reach the App, which reports them; here the view stops waiting.
        if event.state != WorkerState.ERROR or not (event.worker.group or "").startswith("data-"):
            return
        error = f"{type(event.worker.error).__name__}: {event.worker.error}"
        task = event.worker.group.removeprefix("data-")
        lines_for = {"check": self.query_one(ValidationReport).task_line,
                     "stats": self.query_one(TokenStatsView).task_line,
                     "convert": self.query_one(ConvertForm).task_line,
                     "generate": self.query_one(GenerateForm).task_line}
        if task in lines_for:
            self._cancels.pop(task, None)
            lines_for[task].finish(error, "failed")
        elif task == "tokenizer":
            self._tokenizer_loading = False
            self.tokenizer_error = error
            self._refresh_view()
        elif task == "render" and self.view in ("template", "tokens"):
            self.query_one(f"#data-{self.view}", TextPanel).show(
                lines(*issue_lines([(True, error)])))
        self._update_bindings()

    # -- validation ---------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="data-check")
    def _check(self, path: Path, cancel: threading.Event) -> None:
        background_priority()
        report = validate_file(path, progress=self._progress("check"), cancel=cancel,
                               features=self.feature_keys.as_dict())
        self.post_message(FileValidated(path, report, cancel))

    @on(FileValidated)
    def _file_validated(self, message: FileValidated) -> None:
        if not self._task_done("check", message.cancel) or message.path != self.path:
            return
        self.report = message.report
        self._show_report()
        self._file_summary()
        self._show_views_bar()

    def _show_report(self) -> None:
        """The open file's check, with the quality flags of answers generated into it."""
        report = self.report
        flags = self.flags.get(self.path, [])
        if flags:
            report = dataclasses.replace(report, warnings=report.warnings + len(flags),
                                         problems=sorted(report.problems + flags,
                                                         key=lambda p: p.line))
        self.query_one(ValidationReport).show(report)

    @on(OptionList.OptionHighlighted, "#data-problem-list")
    def _problem_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        problem = self.query_one(ValidationReport).problem_at(event.option_index)
        if problem is not None:
            self._go_to_line(problem.line)

    @on(OptionList.OptionSelected, "#data-problem-list")
    def _problem_selected(self, event: OptionList.OptionSelected) -> None:
        problem = self.query_one(ValidationReport).problem_at(event.option_index)
        if problem is not None:
            self._go_to_line(problem.line)
            self.action_view("raw")

    # -- going to a line ----------------------------------------------------------------------
    def action_go_to_line(self) -> None:
        if self.rows is not None:
            rows = self.query_one(RowList)
            rows.focus()
            rows.type_line()

    @on(RowList.LineTyped)
    def _line_typed(self, message: RowList.LineTyped) -> None:
        if message.text is None:
            self._file_summary()
            return
        last = self.rows.line_of(self.rows.known - 1) if self.rows.known else 0
        known = "" if self.rows.done else ", still indexing"
        self._summary(f"go to line (1–{last:,}{known}): {message.text}▏ Enter to go, "
                      "Escape to cancel")

    @on(RowList.LineEntered)
    def _line_entered(self, message: RowList.LineEntered) -> None:
        self._file_summary()
        self._go_to_line(message.line)

    def _go_to_line(self, line: int) -> None:
        rows = self.rows
        if rows is None or line < 1:
            return
        row = rows.row_at_line(line)
        if row is not None:
            self.query_one(RowList).go_to(row)
            # Now rather than when the list's message comes round: one redraw shows both.
            self._show_row_at(row)
        elif not rows.done:
            self._summary(f"{self.path.name} · waiting for line {line:,} to be indexed…")
            self._reach_line(rows, line)
        else:
            self.notify(f"{self.path.name} has {rows.known:,} lines: no line {line:,}",
                        severity="warning")

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-jump")
    def _reach_line(self, rows, line: int) -> None:
        try:
            found = rows.wait_for_line(line)
        except IndexCancelled:
            found = False
        self.post_message(LineReached(rows.path, line, found))

    @on(LineReached)
    def _line_reached(self, message: LineReached) -> None:
        if message.path != self.path or self.rows is None:
            return
        self.query_one(RowList).grow()
        self._file_summary()
        if message.found:
            self._go_to_line(message.line)
        else:
            self.notify(f"{self.path.name}: line {message.line:,} is past the indexed lines",
                        severity="warning")

    # -- token statistics ---------------------------------------------------------------------
    def _stats_key(self) -> tuple:
        return (self.path, self.mask_prompt, self.max_seq_length)

    def _show_stats(self) -> None:
        view = self.query_one(TokenStatsView)
        if self.rows is None:
            return
        if self._stats is not None and self._stats.key == self._stats_key():
            view.panel.show(Content.styled(f"{self.path.name}: tokens with the tokenizer of "
                                           f"{one_line(self.model or '')}", MUTED),
                            stats_content(self._stats.stats, self._stats.counts))
            return
        if self._task_running("stats"):
            return
        if not self.model or self.tokenizer_error:
            view.task_line.finish(self.tokenizer_error or "no model: set `model` in "
                                  "tunedeck.toml to count tokens", "failed")
            return
        if self.tokenizer is None:
            self._load_tokenizer_once()
            view.task_line.progress(f"loading the tokenizer of {self.model}…", None)
            return
        view.panel.show(Content(""))
        view.task_line.progress(f"tokenizing {self.path.name}", 0.0)
        self._count(self._stats_key(), self.tokenizer, self._new_cancel("stats"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-stats")
    def _count(self, key: tuple, tokenizer, cancel: threading.Event) -> None:
        path, mask_prompt, max_seq_length = key
        with mlx_streams_released():
            counts = count_tokens(path, tokenizer, mask_prompt,
                                  progress=self._progress("stats"), cancel=cancel,
                                  keys=self.feature_keys)
        stats = token_stats(counts, max_seq_length)
        self.post_message(TokensCounted(key, counts, stats, cancel))

    @on(TokensCounted)
    def _tokens_counted(self, message: TokensCounted) -> None:
        if not self._task_done("stats", message.cancel) or message.key[0] != self.path:
            return
        view = self.query_one(TokenStatsView)
        if not message.counts.complete:
            view.task_line.finish("counting cancelled: press s to count again")
            view.panel.show(Content(""))
            return
        self._stats = message
        view.task_line.finish(f"{plural(message.stats.rows, 'row')} counted", "succeeded")
        if self.view == "stats":
            self._show_stats()

    # -- conversion ---------------------------------------------------------------------------
    @on(Button.Pressed, "#convert-run")
    @on(Input.Submitted, "#data-convert Input")
    def _convert_asked(self) -> None:
        self.action_convert()

    def _request_of(self, form, task: str):
        """The form's request; None when ``task`` runs already or the form is wrong (then its
        task line says why)."""
        if self._task_running(task):
            return None
        try:
            return form.request(self.project)
        except BadInput as exc:
            form.task_line.finish(str(exc), "failed")
            return None

    def action_convert(self) -> None:
        form = self.query_one(ConvertForm)
        request = self._request_of(form, "convert")
        if request is None:
            return
        form.show_problems([])
        form.task_line.progress("converting…", None)
        self._convert(request, self.model, self.tokenizer, self._new_cancel("convert"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-convert")
    def _convert(self, request: ConversionRequest, model: Optional[str], tokenizer,
                 cancel: threading.Event) -> None:
        with mlx_streams_released():
            self._convert_here(request, model, tokenizer, cancel)

    def _convert_here(self, request: ConversionRequest, model: Optional[str], tokenizer,
                      cancel: threading.Event) -> None:
        try:
            if request.txt_mode == "chunk" and tokenizer is None:
                if not model:
                    raise BadInput("txt mode chunk counts tokens: set `model` in tunedeck.toml")
                tokenizer = load_tokenizer(model, progress=self._progress("convert"))
                self.post_message(TokenizerLoaded(model, tokenizer))
            result = convert(list(request.inputs), request.out_dir, to=request.to,
                             split=request.split, seed=request.seed, txt_mode=request.txt_mode,
                             tokenizer=tokenizer, force=request.force, keep=request.keep,
                             progress=self._progress("convert"), cancel=cancel)
        except InvalidData as exc:
            self.post_message(DataConverted(request, cancel, error=str(exc),
                                            problems=tuple(exc.problems)))
        except ConversionCancelled:
            self.post_message(DataConverted(request, cancel,
                                            error="cancelled: nothing was written"))
        except BadInput as exc:
            self.post_message(DataConverted(request, cancel, error=str(exc)))
        else:
            self.post_message(DataConverted(request, cancel, result))

    @on(DataConverted)
    def _data_converted(self, message: DataConverted) -> None:
        if not self._task_done("convert", message.cancel):
            return
        form = self.query_one(ConvertForm)
        if message.error:
            form.task_line.finish(message.error, "failed")
            form.show_problems(message.problems)
            return
        result = message.result
        written = ", ".join(f"{p.name} ({result.counts[p.stem]:,})" for p in result.files)
        form.task_line.finish(f"wrote {written} rows as {result.target} into {result.out_dir}",
                              "succeeded")
        form.show_problems([])
        for warning in result.warnings:
            self.notify(warning, severity="warning", timeout=10)
        self._add_files(list(result.files))
        self.open_file(result.files[0])
        # The new rows are what to look at next; the form keeps its values for another run.
        self.query_one(RowList).focus()

    # -- generation ---------------------------------------------------------------------------
    @on(Button.Pressed, "#generate-run")
    @on(Input.Submitted, "#data-generate Input")
    def _generate_asked(self) -> None:
        self.action_generate()

    def action_generate(self) -> None:
        """Start (or resume: what is written is kept and skipped) the form's generation."""
        form = self.query_one(GenerateForm)
        request = self._request_of(form, "generate")
        if request is None:
            return
        where = request.endpoint or request.model
        form.task_line.progress(f"generating {request.kind} with {where}…", None)
        self._generate(request, self._new_cancel("generate"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-generate")
    def _generate(self, request: GenerationRequest, cancel: threading.Event) -> None:
        from tunedeck.core.data.generate import (generate_answers, generate_questions,
                                                 open_source)

        progress = self._progress("generate")

        def written(paths: list) -> None:
            self.post_message(GenerationWritten(paths))

        try:
            with mlx_streams_released():
                source = open_source(model=request.model, adapter=None,
                                     endpoint=request.endpoint, progress=progress)
                try:
                    if request.kind == "questions":
                        result = generate_questions(
                            source, request.topic, request.count, request.out,
                            max_tokens=request.max_tokens, temp=request.temp,
                            seed=None if request.endpoint else 0, progress=progress,
                            cancel=cancel, on_written=written)
                    else:
                        result = generate_answers(
                            source, request.prompts, request.out,
                            max_tokens=request.max_tokens, temp=request.temp,
                            seed=None if request.endpoint else 0, split=request.split,
                            progress=progress, cancel=cancel, on_written=written)
                finally:
                    source.close()
        except (BadInput, WorkFailed) as exc:
            self.post_message(GenerationFinished(request, cancel, error=str(exc)))
        else:
            self.post_message(GenerationFinished(request, cancel, result))

    @on(GenerationWritten)
    def _generation_written(self, message: GenerationWritten) -> None:
        """New rows show as they are written: the file shown is read again."""
        self._add_files(message.paths)
        if self.path in message.paths:
            self.open_file(self.path)
        elif message.paths:
            self.open_file(message.paths[0])

    @on(GenerationFinished)
    def _generation_finished(self, message: GenerationFinished) -> None:
        if not self._task_done("generate", message.cancel):
            return
        form = self.query_one(GenerateForm)
        if message.error:
            form.task_line.finish(message.error, "failed")
            return
        result = message.result
        stopped = " · stopped: generate again to resume" if result.cancelled else ""
        if message.request.kind == "questions":
            have = result.already + result.written
            form.task_line.finish(f"{plural(have, 'question')} in {result.path.name} "
                                  f"({result.written:,} new){stopped}",
                                  "" if result.cancelled or have < result.wanted else "succeeded")
            return
        self.flags = {}
        for problem in result.flags:
            self.flags.setdefault(Path(problem.path), []).append(problem)
        failed = f" · {plural(len(result.failed), 'prompt')} failed" if result.failed else ""
        form.task_line.finish(
            f"{plural(result.written, 'answer')} written, {result.already:,} from before · "
            f"{plural(len(result.flags), 'flagged answer')} (p: Problems){failed}{stopped}",
            "failed" if result.failed else ("" if result.cancelled else "succeeded"))
        if self.report is not None and self.report.path == self.path:
            self._show_report()
