"""The Data pane: browse, check, measure and convert the project's datasets before training.

Rows come through a line index built in the background (rows.py), so the first rows of a 1 GB
file show at once and any line can be reached. Below the row list, the row as raw JSON, as the
chat template renders it, or token by token with what carries loss; or, for the whole file, the
validation report, the token statistics, and the conversion and generation forms. Everything
slow runs in a thread worker of the view that shows it (background.py); the pane opens files,
keeps what several views share (the tokenizer, the open file's report) and says which view is
shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Button, ContentSwitcher, Input, Label, OptionList
from textual.worker import Worker, WorkerState, get_current_worker

from tunedeck.core.data.tokens import load_tokenizer
from tunedeck.core.errors import BadInput

from .background import in_own_thread, worker_error
from .check_view import ValidationReport
from .content import (file_summary, views_bar, MUTED, raw_content)
from .convert_form import ConvertForm
from .generate_form import GenerateForm
from .messages import (DataConverted, FileChosen, FileOpened, FileValidated, GenerationFinished,
                       IndexGrew,
                       GenerationWritten, LineEntered, LineReached, LineTyped, PathAnswered,
                       RowRendered, TaskProgressed, TaskStateChanged,
                       TokenizerLoaded, TokensCounted)
from .file_bar import FileBar
from .project_config import DataSettings
from .row_list import RowList
from .row_view import RenderedRowView, Tokenizing
from .rows import one_line
from .stats_view import TokenStatsView
from .text_panel import TextPanel

VIEWS = (("raw", "r", "Raw"), ("template", "t", "Template"), ("tokens", "k", "Tokens"),
         ("problems", "p", "Problems"), ("stats", "s", "Stats"), ("convert", "c", "Convert"),
         ("generate", "n", "Generate"))
ROW_VIEWS = ("raw", "template", "tokens")
TOKENIZER_VIEWS = ("template", "tokens", "stats")
SITUATIONAL_ACTIONS = ("toggle_mask_prompt", "cancel", "convert", "generate")  # check_action
FORMS = ("convert", "generate")
TASK_VIEWS = ("problems", "stats", "convert", "generate")   # views with a task of their own


class DataPane(Vertical):
    PANE_TITLE = "Data"
    DEFAULT_CSS = """
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
        settings = DataSettings.of(self.project)
        self.config_problem = settings.problem
        self.data_dir = settings.data_dir
        self.model = settings.model
        self.mask_prompt = settings.mask_prompt
        self.feature_keys = settings.feature_keys
        self.max_seq_length = settings.max_seq_length
        self.view = "raw"
        self.path: Optional[Path] = None   # the file shown
        self.row_list = RowList(self._show_row_at, id="data-rows")
        self.row: Optional[int] = None     # the row under the cursor
        self.bar = FileBar(self.project, self.data_dir, id="data-bar")
        self.report = None                 # the open file's validation report
        self.tokenizer: Any = None
        self.tokenizer_error: Optional[str] = None
        self._tokenizer_worker: Optional[Worker] = None
        self._rendered: dict[tuple, Any] = {}   # the current row, rendered (or why not)
        self._stats: Optional[TokensCounted] = None
        self._shown_actions: tuple = ()
        self.flags: dict[Path, list] = {}   # quality flags of generated answers, by file
        self._focus_when_composed = False

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        files = self.files()
        yield self.bar
        yield self.row_list
        yield Label("", id="data-views-bar")
        with ContentSwitcher(initial="data-raw", id="data-views"):
            yield TextPanel(id="data-raw")
            yield RenderedRowView("template", id="data-template")
            yield RenderedRowView("tokens", id="data-tokens")
            yield ValidationReport(id="data-problems")
            yield TokenStatsView(id="data-stats")
            yield ConvertForm(inputs=files[:1], project=self.project, id="data-convert")
            yield GenerateForm(base=self.project, model=self.model, prompts=None,
                               out=self.project / "generated" if self.project else None,
                               id="data-generate")

    def on_mount(self) -> None:
        if self._focus_when_composed:
            self.row_list.focus()
        if self.config_problem:
            self.notify(self.config_problem, title="tunedeck.toml", severity="error", timeout=12)
        self._show_views_bar()
        files = self.files()
        if files:
            self.open_file(files[0])
        else:
            where = self.data_dir or (self.project / "data" if self.project else "the project")
            self.bar.say(f"no data files in {where}: open one (o) or convert one (c)")

    @property
    def rows(self):
        """The rows of the file shown (rows.py), once opened."""
        return self.row_list.source

    def focus_main(self) -> None:
        # The App can show the pane between its mounting and the composing of its children
        # (it is built after the first frame): the row list takes the focus once it exists.
        rows = self.query(RowList)
        if rows:
            rows.first().focus()
        else:
            self._focus_when_composed = True

    def files(self) -> list[Path]:
        return self.bar.files()

    def _show_views_bar(self) -> None:
        errors = self.report.errors if self.report is not None else 0
        self.query_one("#data-views-bar", Label).update(
            views_bar(VIEWS, self.view, errors, self.mask_prompt, self.max_seq_length))

    def _file_summary(self) -> None:
        if self.rows is not None and self.path is not None:
            report = self.report if self.report is not None and self.report.path == self.path \
                else None
            self.bar.say(file_summary(self.path, self.rows, report))

    # -- opening files ------------------------------------------------------------------------
    def open_file(self, path: Path) -> None:
        """Show ``path``: its rows as soon as the first are indexed, then its check."""
        path = Path(path)
        self.bar.show_file(path)
        self.path, self.row, self.report, self._stats = path, None, None, None
        self._rendered.clear()
        self.query_one(ValidationReport).clear()
        self.query_one(TokenStatsView).forget()
        self.bar.say(f"{path.name} · opening…")
        try:
            rows = self.row_list.open_file(path, self.feature_keys)
        except OSError as exc:
            self.bar.say(f"{path}: {exc.strerror or exc}")
            return
        if rows is not None:  # a JSON array is read in the background: FileOpened
            self._rows_opened()

    @on(FileOpened)
    def _file_opened(self, message: FileOpened) -> None:
        if message.error:
            self.bar.say(message.error)
        else:
            self._rows_opened()

    def _rows_opened(self) -> None:
        self._file_summary()
        if self.rows.done:
            self._check()
        else:
            # Validation waits for the index: it takes every core for a big file, and the
            # index (which any jump needs) is the quicker of the two.
            self.query_one(ValidationReport).task_line.progress("waiting for the index", None)
        if self.view == "stats":
            self._refresh_view()

    @on(IndexGrew)
    def _index_grew(self, message: IndexGrew) -> None:
        self._file_summary()
        if message.done:
            self._check()

    @on(FileChosen)
    def _file_chosen(self, message: FileChosen) -> None:
        self.open_file(message.path)
        self.row_list.focus()

    def action_choose_file(self) -> None:
        self.bar.choose_file()

    def action_open_file(self) -> None:
        self.bar.ask_path()

    def _open_answered(self, text: str) -> None:
        path = self.bar.resolve(text)
        if not path.is_file():
            self.notify(f"{path}: no such file", severity="warning")
            return
        self.open_file(path)
        self.query_one(ConvertForm).set_inputs([path])

    @on(PathAnswered)
    def _prompt_answered(self, message: PathAnswered) -> None:
        self.row_list.focus()
        if message.text:
            self._open_answered(message.text)

    # -- rows and views -----------------------------------------------------------------------
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
            self.row_list.focus()
        self._update_bindings()

    def _refresh_view(self) -> None:
        view = self.view
        if view in ROW_VIEWS:
            self._show_row(view)
        elif view == "stats":
            self._show_stats()

    def _show_row(self, view: str) -> None:
        rows, row = self.rows, self.row
        detail = rows.detail(row) if rows is not None and row is not None and row < rows.known \
            else None
        if view == "raw":
            panel = self.query_one("#data-raw", TextPanel)
            panel.show(*raw_content(detail, self.path.name) if detail else
                       (Content.styled("no row", MUTED),))
            return
        panel = self.query_one(f"#data-{view}", RenderedRowView)
        if detail is None:
            panel.show(Content.styled("no row", MUTED))
            return
        if panel.show_row(detail, self.path, self.row, self.rows.container,
                          self._tokenizing(), self._rendered):
            self._load_tokenizer_once()

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
    def _tokenizing(self) -> Tokenizing:
        return Tokenizing(self.model, self.tokenizer, self.tokenizer_error, self.mask_prompt,
                          self.max_seq_length, self.feature_keys)

    def _load_tokenizer_once(self) -> None:
        if self._tokenizer_worker is None and self.tokenizer is None and self.model:
            self._tokenizer_worker = self._load_tokenizer(self.model)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-tokenizer")
    def _load_tokenizer(self, model: str) -> None:
        worker = get_current_worker()

        def progress(label: str, fraction: Optional[float]) -> None:
            self.post_message(TaskProgressed(worker, label, fraction))

        try:
            tokenizer = in_own_thread(load_tokenizer, model, progress=progress)
        except BadInput as exc:
            self.post_message(TokenizerLoaded(model, error=str(exc)))
        else:
            self.post_message(TokenizerLoaded(model, tokenizer))

    @on(TokenizerLoaded)
    def _tokenizer_loaded(self, message: TokenizerLoaded) -> None:
        self._tokenizer_worker = None
        self.tokenizer, self.tokenizer_error = message.tokenizer, message.error
        self._refresh_view()

    @on(TaskProgressed)
    def _tokenizer_progressed(self, message: TaskProgressed) -> None:
        if message.worker is self._tokenizer_worker and self.view in ("template", "tokens"):
            self.query_one(f"#data-{self.view}", TextPanel).show(
                Content.styled(one_line(message.label), MUTED))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The pane's own worker, the tokenizer's (each view says itself when its worker fails).
        if event.state == WorkerState.ERROR and event.worker is self._tokenizer_worker:
            self._tokenizer_worker = None
            self.tokenizer_error = worker_error(event.worker)
            self._refresh_view()

    # -- the keys -----------------------------------------------------------------------------
    @on(TaskStateChanged)
    def _task_state_changed(self) -> None:
        self._update_bindings()

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
            return any(self.query_one(f"#data-{view}").task_running for view in TASK_VIEWS) or (
                self.rows is not None and not self.rows.done)
        if action in FORMS:
            return self.view == action
        return True

    def action_cancel(self) -> None:
        """Stop the work of the view shown; in the row views, the indexing of a big file."""
        if self.view in TASK_VIEWS:
            self.query_one(f"#data-{self.view}").cancel_task()
        elif self.rows is not None and not self.rows.done:
            self.rows.cancel()
        self._update_bindings()

    # -- validation ---------------------------------------------------------------------------
    def _check(self) -> None:
        self.query_one(ValidationReport).check(self.path, self.feature_keys.as_dict())

    @on(FileValidated)
    def _file_validated(self, message: FileValidated) -> None:
        if message.path != self.path:
            return
        self.report = message.report
        self._show_report()
        self._file_summary()
        self._show_views_bar()
        self._update_bindings()  # now, with the report: x (Cancel) goes

    def _show_report(self) -> None:
        """The open file's check, with the quality flags of answers generated into it."""
        self.query_one(ValidationReport).show(self.report, self.flags.get(self.path, []))

    @on(OptionList.OptionHighlighted, "#data-problem-list")
    @on(OptionList.OptionSelected, "#data-problem-list")
    def _problem_chosen(self, event: OptionList.OptionMessage) -> None:
        """A problem highlighted shows its row in the list; selected, opens it (raw view)."""
        problem = self.query_one(ValidationReport).problem_at(event.option_index)
        if problem is not None:
            self._go_to_line(problem.line)
            if isinstance(event, OptionList.OptionSelected):
                self.action_view("raw")

    # -- going to a line ----------------------------------------------------------------------
    def action_go_to_line(self) -> None:
        if self.rows is not None:
            # Focusing the list again when it has the focus repaints all of it for nothing.
            if not self.row_list.has_focus:
                self.row_list.focus()
            self.row_list.type_line()

    @on(LineTyped)
    def _line_typed(self, message: LineTyped) -> None:
        if message.text is None:
            self._file_summary()
            return
        last = self.rows.line_of(self.rows.known - 1) if self.rows.known else 0
        known = "" if self.rows.done else ", still indexing"
        self.bar.say(f"go to line (1–{last:,}{known}): {message.text}▏ Enter to go, "
                     "Escape to cancel")

    @on(LineEntered)
    def _line_entered(self, message: LineEntered) -> None:
        self._file_summary()
        self._go_to_line(message.line)

    def _go_to_line(self, line: int) -> None:
        row = self.row_list.go_to_line(line)
        if row is not None:
            # The cursor may be on that row already without it being shown (a file whose first
            # rows were indexed after it opened): the list then says nothing.
            self._show_row_at(row)
        elif self.rows is not None and not self.rows.done and line >= 1:
            self.bar.say(f"{self.path.name} · waiting for line {line:,} to be indexed…")

    @on(LineReached)
    def _line_reached(self, message: LineReached) -> None:
        if message.path != self.path or self.rows is None:
            return
        self.row_list.grow()
        self._file_summary()
        if message.found:
            self._go_to_line(message.line)
        else:
            self.notify(f"{self.path.name}: line {message.line:,} is past the indexed lines",
                        severity="warning")

    # -- token statistics ---------------------------------------------------------------------
    def _show_stats(self) -> None:
        key = (self.path, self.mask_prompt, self.max_seq_length)
        if self.rows is not None and self.query_one(TokenStatsView).show_for(
                key, self._stats, self._tokenizing()):
            self._load_tokenizer_once()

    @on(TokensCounted)
    def _tokens_counted(self, message: TokensCounted) -> None:
        # Complete counts of the open file: the view has stopped any other.
        self._stats = message
        if self.view == "stats":
            self._show_stats()

    # -- conversion ---------------------------------------------------------------------------
    @on(Button.Pressed, "#convert-run")
    @on(Input.Submitted, "#data-convert Input")
    def _convert_asked(self) -> None:
        self.action_convert()

    def action_convert(self) -> None:
        self.query_one(ConvertForm).run(self.project, self.model, self.tokenizer)

    @on(DataConverted)
    def _data_converted(self, message: DataConverted) -> None:
        # Files written (the form has stopped failures and stale runs).
        result = message.result
        for warning in result.warnings:
            self.notify(warning, severity="warning", timeout=10)
        self.bar.add_files(list(result.files))
        self.open_file(result.files[0])
        # The new rows are what to look at next; the form keeps its values for another run.
        self.row_list.focus()

    # -- generation ---------------------------------------------------------------------------
    def action_generate(self) -> None:
        self.query_one(GenerateForm).run()

    @on(GenerationWritten)
    def _generation_written(self, message: GenerationWritten) -> None:
        """New rows show as they are written: the file shown is read again."""
        self.bar.add_files(message.paths)
        if self.path in message.paths:
            self.open_file(self.path)
        elif message.paths:
            self.open_file(message.paths[0])

    @on(GenerationFinished)
    def _generation_finished(self, message: GenerationFinished) -> None:
        # Answers written (the form has said how many): their quality flags join the check.
        self.flags = {}
        for problem in message.result.flags:
            self.flags.setdefault(Path(problem.path), []).append(problem)
        if self.report is not None and self.report.path == self.path:
            self._show_report()
