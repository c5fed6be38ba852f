"""Did the fine-tune help? The evaluation of one checkpoint against its base model, shown over
the app: progress while the App's worker measures, then loss, perplexity and scored answers.

Closing the screen (escape) while it runs stops the evaluation. Dataset and model text is shown
literally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, ProgressBar, Static

from ...messages import EvaluationStopRequested
from ...widgets.key_footer import KeyFooter
from ...widgets.progress import ProgressLine
from tunedeck.core.text import literal


def _figure(value: Optional[float], digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _change(base: Optional[float], adapter: Optional[float], lower_is_better: bool,
            digits: int = 3) -> str:
    if base is None or adapter is None:
        return "—"
    delta = adapter - base
    if delta == 0:
        return "same"
    better = delta < 0 if lower_is_better else delta > 0
    return f"{delta:+.{digits}f} ({'better' if better else 'worse'})"


def _labelled(label: str, text: str) -> Content:
    """A muted label, then dataset or model text as plain text (never markup)."""
    return Content.from_markup("[$text-muted]$label[/]  ", label=label) + Content(literal(text))


class EvaluationScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close", id="close-evaluation")]
    DEFAULT_CSS = """
    EvaluationScreen { align: center middle; }
    EvaluationScreen > #evaluation {
        width: 90%; height: 90%; padding: 0 1; border: thick $primary; background: $surface;
    }
    EvaluationScreen #evaluation-title { text-style: bold; width: 1fr; }
    EvaluationScreen #evaluation-progress-text { color: $text-muted; width: 1fr; }
    EvaluationScreen #evaluation-summary { height: auto; max-height: 9; margin-top: 1; }
    EvaluationScreen #evaluation-samples { height: 1fr; margin-top: 1; }
    EvaluationScreen .sample-prompt { color: $accent; text-style: bold; margin-top: 1; }
    EvaluationScreen #evaluation-saved { color: $text-muted; width: 1fr; }
    EvaluationScreen.-failed #evaluation-progress-text { color: $error; }
    """

    def __init__(self, serial: int, run_name: str, iteration: int):
        super().__init__()
        self.serial = serial
        self.run_name = run_name
        self.iteration = iteration
        self.running = True
        self.report = None

    def compose(self) -> ComposeResult:
        with Vertical(id="evaluation"):
            yield Label(Text(f"Evaluating {self.run_name} · checkpoint {self.iteration} against its "
                             "base model"), id="evaluation-title")
            yield Label(Text("starting…"), id="evaluation-progress-text")
            yield ProgressLine(total=None, id="evaluation-progress")
            yield DataTable(cursor_type="none", id="evaluation-summary")
            yield VerticalScroll(id="evaluation-samples")
            yield Label("", id="evaluation-saved")
        yield KeyFooter()

    def on_mount(self) -> None:
        summary = self.query_one(DataTable)
        summary.add_columns("", "base", "adapter", "change")
        summary.display = False
        # The worker may have reported before the screen was composed: show what it said.
        self._ready = True
        if self._progress is not None:
            self._show_progress(*self._progress)
        if self._failure is not None:
            self._show_failure(self._failure)
        if self._result is not None:
            self._show_report(*self._result)

    def action_close(self) -> None:
        if self.running:
            self.app.post_message(EvaluationStopRequested(self.serial))
        self.dismiss()

    # -- what the App tells the screen -------------------------------------------------------------
    # Kept until the screen is composed: the App's messages can come before its widgets exist.
    _ready = False
    _progress: Optional[tuple] = None
    _failure: Optional[str] = None
    _result: Optional[tuple] = None

    def progressed(self, text: str, fraction: Optional[float]) -> None:
        self._progress = (text, fraction)
        if self._ready:
            self._show_progress(text, fraction)

    def failed(self, text: str) -> None:
        self.running = False
        self._failure = text
        if self._ready:
            self._show_failure(text)

    def finished(self, report, path: Path) -> None:
        self.running = False
        self._result = (report, path)
        if self._ready:
            self._show_report(report, path)

    def _show_progress(self, text: str, fraction: Optional[float]) -> None:
        self.query_one("#evaluation-progress-text", Label).update(Text(text))
        bar = self.query_one(ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=100 * fraction)

    def _show_failure(self, text: str) -> None:
        self.add_class("-failed")
        self.query_one("#evaluation-progress-text", Label).update(Text(f"could not evaluate: {text}"))
        self.query_one(ProgressBar).display = False

    def _show_report(self, report, path: Path) -> None:
        self.query_one(ProgressBar).display = False
        self.query_one("#evaluation-progress-text", Label).update(Text(
            f"{report.split} split: {report.rows} rows, {len(report.samples)} answers scored, "
            f"in {report.seconds:.0f} s"))
        summary = self.query_one(DataTable)
        summary.display = True
        base_f1, adapter_f1 = report.mean("base_f1"), report.mean("adapter_f1")
        base_em, adapter_em = report.mean("base_exact"), report.mean("adapter_exact")
        summary.add_row("loss", _figure(report.base_loss), _figure(report.adapter_loss),
                        _change(report.base_loss, report.adapter_loss, lower_is_better=True))
        summary.add_row("perplexity", _figure(report.base_ppl, 2), _figure(report.adapter_ppl, 2),
                        _change(report.base_ppl, report.adapter_ppl, lower_is_better=True, digits=2))
        summary.add_row("mean token F1", _figure(base_f1), _figure(adapter_f1),
                        _change(base_f1, adapter_f1, lower_is_better=False))
        summary.add_row("exact match", _figure(base_em, 2), _figure(adapter_em, 2),
                        _change(base_em, adapter_em, lower_is_better=False))
        if report.sign_off:
            # The persona and the facts apart: a model can learn the one and lose the other.
            base_rate, adapter_rate = report.sign_off_rate("base"), report.sign_off_rate("adapter")
            summary.add_row(Text(f"sign-off ({report.sign_off})"), _figure(base_rate, 2),
                            _figure(adapter_rate, 2),
                            _change(base_rate, adapter_rate, lower_is_better=False, digits=2))
            base_content, adapter_content = (report.mean("base_content_f1"),
                                             report.mean("adapter_content_f1"))
            summary.add_row("content F1 (sign-off stripped)", _figure(base_content),
                            _figure(adapter_content),
                            _change(base_content, adapter_content, lower_is_better=False))
        samples = self.query_one("#evaluation-samples", VerticalScroll)
        for n, sample in enumerate(report.samples, 1):
            asked = sample.prompt[-1]["content"] if sample.prompt else ""
            samples.mount(
                Static(Content(f"{n}. {literal(asked)}"), classes="sample-prompt"),
                Static(_labelled("expected", sample.expected)),
                Static(_labelled(f"base · F1 {sample.base_f1:.2f}", sample.base)),
                Static(_labelled(f"adapter · F1 {sample.adapter_f1:.2f}", sample.adapter)))
        self.query_one("#evaluation-saved", Label).update(Text(f"report saved to {path}"))
        self.report = report  # set last: whoever reads it finds the table filled
