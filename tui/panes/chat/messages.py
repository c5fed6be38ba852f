"""Messages of chatting, named for what happened.

The Chat pane posts what the user asked for; the App's workers post what came of it, each tagged
with the serial number of the request it answers, so the App can drop the last words of a
request that was cancelled or replaced. (Evaluating is the App's: its messages are in
``tunedeck.tui.messages``.)
"""

from __future__ import annotations

from typing import Optional

from textual.message import Message

from tunedeck.core.adapters import AdapterRef
from tunedeck.core.chat_choices import AdapterChoice
from tunedeck.core.chat import GenerationSettings

from ...messages import WorkProgressed


# -- from the Chat pane -----------------------------------------------------------------------
class ChoicesScanned(Message):
    """The models and adapters the pane's worker found to offer (core.chat_choices)."""

    def __init__(self, models: list[tuple[str, str]], adapters: dict[str, AdapterChoice]):
        super().__init__()
        self.models = models
        self.adapters = adapters


class ChatModelRequested(Message):
    """Load ``model`` (a model directory or ``demo``) with ``adapter`` (None: the base alone)."""

    def __init__(self, model: str, adapter: Optional[AdapterRef]):
        super().__init__()
        self.model = model
        self.adapter = adapter


class ChatAsked(Message):
    """Answer ``conversations[i]`` with ``sides[i]``; two sides answer side by side."""

    def __init__(self, sides: list[Optional[AdapterRef]], conversations: list[list[dict]],
                 settings: GenerationSettings):
        super().__init__()
        self.sides = sides
        self.conversations = conversations
        self.settings = settings


class ChatStopRequested(Message):
    """Stop the model load or the answer under way."""


# -- from the App's workers ---------------------------------------------------------------------
class ChatModelProgressed(WorkProgressed):
    """How far the chat model's load ``serial`` has got."""


class ChatModelLoaded(Message):
    """``chat`` (a ``ChatModel``) holds the requested model and adapter."""

    def __init__(self, serial: int, chat, model: str, reloaded: bool):
        super().__init__()
        self.serial = serial
        self.chat = chat
        self.model = model
        self.reloaded = reloaded


class AnswerStreamed(Message):
    """One side's answer so far (the whole text: a newer one supersedes a pending older one)."""

    def __init__(self, serial: int, side: int, text: str, tokens: int, tokens_per_sec: float,
                 finish_reason: Optional[str] = None):
        super().__init__()
        self.serial = serial
        self.side = side
        self.text = text
        self.tokens = tokens
        self.tokens_per_sec = tokens_per_sec
        self.finish_reason = finish_reason

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, AnswerStreamed) and message.serial == self.serial
                and message.side == self.side and self.finish_reason is None)
