"""The Export dialog of the Checkpoints pane: format, folder, de-quantize, name; then the stages
as they happen and the verification result.

The export runs as a ``tunedeck export … --json`` child process, so the app stays responsive and
holds no second copy of the model; cancelling kills the child, and an export killed at any moment
leaves no folder behind (the export writes into a hidden sibling renamed at the end).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet

from tunedeck.core.checkpoints import Checkpoint
from tunedeck.core.export import FORMATS, export_command

from ...widgets.dialogs import DialogBox
from .messages import ExportFinished, ExportProgressed

STOP_GRACE_S = 10  # how long a cancelled export gets to clean up after itself


def default_folder(checkpoint: Checkpoint, to: str) -> Path:
    return checkpoint.path.parent.parent / f"export-{checkpoint.iteration}-{to}"


def verification_lines(report: dict) -> list[str]:
    lines = []
    for name, check in report.get("verification", {}).items():
        if check.get("skipped"):
            lines.append(f"{name}: skipped ({check['skipped']})")
        else:
            verdict = "equal" if check.get("equal") else "DIFFERENT"
            lines.append(f"{name}: {verdict}" + (f" — {check['summary']}" if check.get("summary") else ""))
            if check.get("note"):
                lines.append(f"  {check['note']}")
    return lines


class ExportDialog(ModalScreen[Optional[dict]]):
    """Dismissed with the export's report (or None when nothing was exported)."""

    BINDINGS = [Binding("escape", "close", "Cancel", id="cancel-export")]

    def __init__(self, checkpoint: Checkpoint, run_name: str):
        super().__init__()
        self.checkpoint = checkpoint
        self.run_name = run_name
        self.process: Optional[subprocess.Popen] = None
        self.report: Optional[dict] = None
        self._default = str(default_folder(checkpoint, "mlx"))

    def compose(self) -> ComposeResult:
        c = self.checkpoint
        with DialogBox(id="export-dialog"):
            yield Label(Text(f"Export checkpoint {c.iteration} of {self.run_name}"), classes="question")
            with RadioSet(id="export-format"):
                for i, to in enumerate(FORMATS):
                    yield RadioButton({"mlx": "MLX model", "gguf": "GGUF", "ollama": "Ollama"}[to],
                                      value=i == 0, id=f"format-{to}")
            yield Label("folder")
            yield Input(self._default, id="export-folder")
            yield Label("name")
            yield Input(f"{self.run_name}-{c.iteration}", id="export-name")
            yield Checkbox("de-quantize (a quantized base saved in full precision)", id="export-dequantize")
            yield Label("", id="export-progress")
            yield Label("", id="export-result")
            with Horizontal(classes="buttons"):
                yield Button("Export", variant="primary", id="export-start")
                yield Button("Cancel", id="export-cancel")

    @property
    def to(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return pressed.id.removeprefix("format-") if pressed else "mlx"

    @on(RadioSet.Changed)
    def _format_changed(self) -> None:
        folder = self.query_one("#export-folder", Input)
        if folder.value == self._default:  # a folder the user typed is left alone
            self._default = folder.value = str(default_folder(self.checkpoint, self.to))

    @on(Button.Pressed, "#export-cancel")
    def _cancel_pressed(self) -> None:
        self.action_close()

    @on(Button.Pressed, "#export-start")
    def _start_pressed(self) -> None:
        if self.process is not None:
            return
        folder = Path(self.query_one("#export-folder", Input).value.strip()).expanduser()
        if folder.exists():
            self.query_one("#export-result", Label).update(
                Text(f"{folder} already exists: choose another folder"))
            return
        command = export_command(self.checkpoint.path.parent.parent, to=self.to, out=folder,
                                 checkpoint=str(self.checkpoint.iteration),
                                 name=self.query_one("#export-name", Input).value.strip() or None,
                                 dequantize=self.query_one(Checkbox).value)
        self.query_one("#export-start", Button).disabled = True
        self.query_one("#export-result", Label).update("")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._follow(self.process)

    @work(thread=True, exclusive=True, group="export")
    def _follow(self, process: subprocess.Popen) -> None:
        last = ""
        for line in process.stderr:
            line = line.rstrip("\n")
            if line.startswith("export: "):
                self.post_message(ExportProgressed(line.removeprefix("export: ")))
            elif line.strip():
                last = line.strip()
        out = process.stdout.read()
        code = process.wait()
        try:
            report = json.loads(out) if out.strip() else None
        except ValueError:
            report = None
        self.post_message(ExportFinished(code, report, last))

    @on(ExportProgressed)
    def _progressed(self, message: ExportProgressed) -> None:
        self.query_one("#export-progress", Label).update(Text(message.line))

    @on(ExportFinished)
    def _finished(self, message: ExportFinished) -> None:
        self.process = None
        self.report = message.report
        result = self.query_one("#export-result", Label)
        progress = self.query_one("#export-progress", Label)
        if message.report is not None:
            verdict = "verified" if message.report.get("verified") else "exported, but the verification FAILED"
            progress.update(Text(f"{verdict}: {message.report['out']}"))
            lines = verification_lines(message.report)
            if message.report.get("ollama_create"):
                lines.append(message.report["ollama_create"])
            result.update(Text("\n".join(lines)))
        else:
            progress.update(Text("export failed"))
            result.update(Text(message.error.removeprefix("tunedeck: error: ") or f"exit code {message.code}"))
            self.query_one("#export-start", Button).disabled = False
        self.query_one("#export-cancel", Button).label = "Close"

    def action_close(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            # An interrupt, not a kill: the export removes its scratch folder (a fused model can
            # take gigabytes) and never renames it into place. A kill is the fallback for one
            # that does not stop; the next export to that folder clears what it left.
            process.send_signal(signal.SIGINT)
            fallback = threading.Timer(STOP_GRACE_S, lambda: process.poll() is None and process.kill())
            fallback.daemon = True  # quitting the app right after must not wait for it
            fallback.start()
        self.dismiss(self.report)
