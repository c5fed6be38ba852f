"""Messages the Checkpoints pane's widgets post to themselves (what goes to the App is in
``tunedeck.tui.messages``)."""

from __future__ import annotations

from typing import Optional

from textual.message import Message


class ExportProgressed(Message):
    def __init__(self, line: str):
        super().__init__()
        self.line = line


class ExportFinished(Message):
    def __init__(self, code: int, report: Optional[dict], error: str):
        super().__init__()
        self.code, self.report, self.error = code, report, error
