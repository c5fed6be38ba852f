"""The Chat pane's row of answer settings: temperature, top-p, max tokens and the system prompt.

The fields are read when a question is sent, so what is typed while an answer streams applies to
the next question, never to the one under way.
"""

from __future__ import annotations

from typing import Optional

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label

from tunedeck.core.chat import GenerationSettings


class AnswerSettings(Horizontal):
    def compose(self) -> ComposeResult:
        yield Label("temp", classes="chat-label")
        yield Input("0.7", compact=True, id="chat-temp")
        yield Label("top-p", classes="chat-label")
        yield Input("1.0", compact=True, id="chat-top-p")
        yield Label("max tokens", classes="chat-label")
        yield Input("256", compact=True, id="chat-max-tokens")
        yield Label("system", classes="chat-label")
        yield Input("", placeholder="system prompt (optional)", compact=True, id="chat-system")

    def sampling(self) -> GenerationSettings:
        """The sampling settings as typed; a ValueError says the first one that is not valid."""
        fields = (("#chat-temp", float, "temp", lambda v: v >= 0, "a number ≥ 0; 0 is greedy"),
                  ("#chat-top-p", float, "top-p", lambda v: 0 < v <= 1, "a number in (0, 1]"),
                  ("#chat-max-tokens", int, "max tokens", lambda v: v >= 1, "a whole number ≥ 1"))
        values = []
        for input_id, kind, name, ok, rule in fields:
            text = self.query_one(input_id, Input).value.strip()
            try:
                value = kind(text)
            except ValueError:
                value = None
            if value is None or not ok(value):
                raise ValueError(f"{name}: {rule} (got {text!r})")
            values.append(value)
        temp, top_p, max_tokens = values
        return GenerationSettings(max_tokens=max_tokens, temp=temp, top_p=top_p)

    def system_prompt(self) -> Optional[str]:
        return self.query_one("#chat-system", Input).value.strip() or None
