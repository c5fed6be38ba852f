"""The Chat pane (minimal until the chat issue): which model and adapter a chat would use.

"open in Chat" from the Checkpoints pane lands here; talking to the model comes with the chat
issue, in an App-owned worker so a model load survives switching panes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label


class ChatPane(Vertical):
    PANE_TITLE = "Chat"
    can_focus = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model: Optional[str] = None
        self.adapter: Optional[Path] = None

    def compose(self) -> ComposeResult:
        yield Label("no model chosen: open a checkpoint in Chat from the Checkpoints pane (c)",
                    id="chat-target")

    def focus_main(self) -> None:
        self.focus()

    def use(self, model: Optional[str], adapter: Path) -> None:
        self.model, self.adapter = model, adapter
        self.query_one("#chat-target", Label).update(Text(
            f"model {model or 'unknown'}\nadapter {adapter}\n\n"
            f"meanwhile: tunedeck chat --model {model} --adapter {adapter}"))
