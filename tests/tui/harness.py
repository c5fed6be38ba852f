"""A bare App around one pane, recording the messages the pane posts upward."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import App, ComposeResult
from textual.message import Message
from textual.widgets import Footer

from tunedeck.themes import THEMES
from tunedeck.tui import messages

APP_CSS = Path(__file__).resolve().parents[2] / "tui" / "app.tcss"
UPWARD = (messages.StartRequested, messages.StopRequested, messages.RunSwitchRequested,
          messages.OverlayRequested, messages.ResumeRequested, messages.WarmStartRequested,
          messages.ChatRequested, messages.DeleteRequested)


class PaneHarness(App):
    CSS_PATH = str(APP_CSS)

    def __init__(self, pane_factory, clock=lambda: 1_800_000_000.0):
        super().__init__()
        self.pane_factory = pane_factory
        self.clock = clock
        self.received: list[Message] = []
        self.copied: list[str] = []
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = THEMES[0].name

    def compose(self) -> ComposeResult:
        yield self.pane_factory()
        yield Footer()

    def copy_to_clipboard(self, text: str) -> None:
        self.copied.append(text)
        super().copy_to_clipboard(text)

    @on(Message)
    def _record(self, message: Message) -> None:
        if isinstance(message, UPWARD):
            self.received.append(message)

    def of_type(self, kind):
        return [m for m in self.received if isinstance(m, kind)]


async def wait_until(pilot, condition, timeout: float = 30.0, what: str = "the condition"):
    """Let the app run until ``condition()`` holds (workers and other processes need time)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        # Checked once more after the deadline: a busy worker can hold the loop past it.
        past = time.monotonic() >= deadline
        value = condition()
        if value:
            return value
        if past:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
