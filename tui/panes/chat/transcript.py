"""The Chat pane's transcript: each side's turns, the answer growing as it streams.

Model text is shown literally: widgets get it as plain text, never markup, with control
characters made visible, so an answer cannot style itself, forge a link or move the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from tunedeck.core.text import literal


def shown(text: str) -> Text:
    return Text(literal(text))


@dataclass
class Answer:
    """One side's answer to the question under way."""

    text: str = ""
    tokens: int = 0
    tokens_per_sec: float = 0.0
    finish_reason: Optional[str] = None

    def meta(self) -> str:
        """The line under the answer: how long and how fast it came, and how it ended."""
        figures = f"{self.tokens} tokens · {self.tokens_per_sec:.1f} tok/s"
        ending = {None: "", "stop": "", "length": " · max tokens reached", "stopped": " · stopped",
                  "cancelled": " · stopped", "failed": " · failed"}
        return figures + ending.get(self.finish_reason, "")


class ChatTranscript(VerticalScroll):
    """One side's turns: the question, the answer as it streams, and how fast it came.
    Focused (tab), it scrolls with the arrow and page keys."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._answer: Optional[Static] = None
        self._meta: Optional[Static] = None

    def on_mount(self) -> None:
        self.anchor()  # the newest turn stays in sight as answers grow, until the user scrolls up

    def add_turn(self, user: str) -> None:
        self._answer, self._meta = Static("", classes="chat-answer"), Static("…", classes="chat-meta")
        self.mount(Static(shown(user), classes="chat-user"), self._answer, self._meta)

    def show_answer(self, text: str, meta: str) -> None:
        if self._answer is not None:
            self._answer.update(shown(text))
            self._meta.update(Text(meta))

    def clear(self) -> None:
        self._answer = self._meta = None
        self.remove_children()
