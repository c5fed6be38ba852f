"""The Convert view of the Data pane: ``tunedeck data convert`` with its main options, run by
the form in its own worker."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Button, Checkbox, Input, Select, Static
from textual.worker import Worker, get_current_worker

from tunedeck.core.data.convert import (TARGETS, ConversionCancelled, InvalidData, convert,
                                        parse_split)
from tunedeck.core.data.plain_text import TXT_MODES
from tunedeck.core.data.tokens import load_tokenizer
from tunedeck.core.errors import BadInput

from .background import TaskView, in_own_thread
from .content import issue_lines, lines
from .form_rows import ActionRow, FieldRow, choice_row, numbers_row, text_row, typed_path
from .messages import DataConverted, TokenizerLoaded
from .task_line import TaskLine

MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class ConversionRequest:
    inputs: tuple
    out_dir: Path
    to: Optional[str]
    split: tuple
    seed: int
    txt_mode: str
    force: bool
    keep: Optional[str] = None      # "chosen": preference and KTO data as supervised data


class TickBox(Checkbox):
    """A checkbox whose box is empty until it is ticked. Textual's draws an X either way, only
    dimmer when unticked, which reads as ticked in many terminals and at 256 colours; for
    "replace the splits" that misreading would overwrite a dataset."""

    @property
    def _button(self):
        self.BUTTON_INNER = "X" if self.value else " "
        return super()._button


class ConvertForm(TaskView, VerticalScroll):
    DEFAULT_CSS = """
    ConvertForm { height: 1fr; scrollbar-size-vertical: 1; }
    ConvertForm FieldRow > Select { width: 24; }
    ConvertForm #convert-options > Input { width: 14; }
    ConvertForm #convert-problems { padding: 0 1; height: auto; }
    """

    def __init__(self, inputs: Sequence[Path] = (), project: Optional[Path] = None, **kwargs):
        super().__init__(**kwargs)
        self.project = project
        self._inputs = " ".join(shlex.quote(str(p)) for p in inputs)
        out_dir = self.default_out_dir(inputs)
        self._out = str(out_dir) if out_dir else ""

    def default_out_dir(self, inputs: Sequence[Path]) -> Optional[Path]:
        """A directory next to the first input, named after it (never the input's own dir)."""
        if not inputs:
            return self.project / "data" if self.project else None
        first = inputs[0]
        return first.parent / f"{first.stem}-mlx"

    def compose(self) -> ComposeResult:
        yield text_row("inputs", self._inputs, "files or directories (.jsonl .json .txt)",
                       "convert-inputs")
        yield text_row("output dir", self._out, "directory for train/valid/test.jsonl",
                       "convert-out")
        yield choice_row(
            ("--to", Select([("auto (from the input)", "auto")] + [(t, t) for t in TARGETS],
                            value="auto", allow_blank=False, compact=True, id="convert-to")),
            ("txt mode", Select([(m, m) for m in TXT_MODES], value="line", allow_blank=False,
                                compact=True, id="convert-txt-mode")))
        yield numbers_row([("split", "80,10,10", "convert-split"), ("seed", "0", "convert-seed")],
                          "convert-options")
        yield FieldRow(TickBox("keep the chosen answers of preference data (chosen/rejected) "
                               "and the KTO examples labelled true", compact=True,
                               id="convert-keep"))
        yield ActionRow(TickBox("replace the splits in a non-empty output dir", compact=True,
                                id="convert-force"),
                        Button("Convert (ctrl+r)", compact=True, variant="primary",
                               id="convert-run"))
        yield TaskLine(id="convert-task")
        yield Static(id="convert-problems")

    def set_inputs(self, inputs: Sequence[Path]) -> None:
        """Convert ``inputs`` next, into the directory named after the first."""
        self.query_one("#convert-inputs", Input).value = " ".join(shlex.quote(str(p))
                                                                  for p in inputs)
        self.query_one("#convert-out", Input).value = str(self.default_out_dir(inputs) or "")

    def focus_first(self) -> None:
        self.query_one("#convert-inputs", Input).focus()

    def request(self, base: Optional[Path]) -> ConversionRequest:
        """The form as a conversion; BadInput naming the field when a value is wrong.
        Relative paths are taken from ``base`` (the project directory)."""
        try:
            inputs = shlex.split(self.query_one("#convert-inputs", Input).value)
        except ValueError as exc:
            raise BadInput(f"inputs: {exc}") from None
        if not inputs:
            raise BadInput("inputs: name at least one file or directory")
        out = self.query_one("#convert-out", Input).value.strip()
        if not out:
            raise BadInput("output dir: name the directory for train/valid/test.jsonl")
        split = parse_split(self.query_one("#convert-split", Input).value.strip())
        seed_text = self.query_one("#convert-seed", Input).value.strip()
        try:
            seed = int(seed_text)
        except ValueError:
            raise BadInput(f"seed: {seed_text!r} is not a whole number") from None
        to = self.query_one("#convert-to", Select).value
        return ConversionRequest(
            inputs=tuple(typed_path(p, base) for p in inputs), out_dir=typed_path(out, base),
            to=None if to == "auto" else to, split=split, seed=seed,
            txt_mode=self.query_one("#convert-txt-mode", Select).value,
            force=self.query_one("#convert-force", Checkbox).value,
            keep="chosen" if self.query_one("#convert-keep", Checkbox).value else None)

    def show_problems(self, problems: Sequence) -> None:
        """The input records that stopped a conversion, as ``FILE:LINE: message``."""
        shown = [(True, str(p)) for p in problems[:MAX_LISTED_PROBLEMS]]
        more = len(problems) - len(shown)
        parts = issue_lines(shown)
        if more > 0:
            parts.append(Content(f"… {more:,} more"))
        self.query_one("#convert-problems", Static).update(lines(*parts) if parts else "")

    # -- running it ---------------------------------------------------------------------------
    def run(self, base: Optional[Path], model: Optional[str], tokenizer) -> None:
        """Convert as the form says (unless a conversion runs already); the pane hears of the
        files written through DataConverted."""
        request = self.request_to_run(base)
        if request is None:
            return
        self.show_problems([])
        self.task_line.progress("converting…", None)
        self.worker = self._convert(request, model, tokenizer)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-convert")
    def _convert(self, request: ConversionRequest, model: Optional[str], tokenizer) -> None:
        worker = get_current_worker()
        in_own_thread(self._convert_here, worker, request, model, tokenizer)

    def _convert_here(self, worker: Worker, request: ConversionRequest, model: Optional[str],
                      tokenizer) -> None:
        progress = self.reporter(worker)
        try:
            if request.txt_mode == "chunk" and tokenizer is None:
                if not model:
                    raise BadInput("txt mode chunk counts tokens: set `model` in tunedeck.toml")
                tokenizer = load_tokenizer(model, progress=progress)
                self.post_message(TokenizerLoaded(model, tokenizer))
            result = convert(list(request.inputs), request.out_dir, to=request.to,
                             split=request.split, seed=request.seed, txt_mode=request.txt_mode,
                             tokenizer=tokenizer, force=request.force, keep=request.keep,
                             progress=progress, cancel=worker.cancelled_event)
        except InvalidData as exc:
            self.post_message(DataConverted(worker, request, error=str(exc),
                                            problems=tuple(exc.problems)))
        except ConversionCancelled:
            self.post_message(DataConverted(worker, request,
                                            error="cancelled: nothing was written"))
        except BadInput as exc:
            self.post_message(DataConverted(worker, request, error=str(exc)))
        else:
            self.post_message(DataConverted(worker, request, result))

    def on_data_converted(self, message: DataConverted) -> None:
        if message.worker is self.worker:
            self.show_problems(message.problems)  # none when it worked
        if self.ends_here(message):
            return
        # On to the pane, which opens what was written.
        result = message.result
        written = ", ".join(f"{p.name} ({result.counts[p.stem]:,})" for p in result.files)
        self.task_line.finish(f"wrote {written} rows as {result.target} into {result.out_dir}",
                              "succeeded")
