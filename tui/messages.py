"""Messages that travel up to the App, named for what happened.

Panes post what the user asked for; the App's workers post what came of it. Thread workers only
ever post these (``post_message`` is the one thread-safe call into the UI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from textual.message import Message

from tunedeck.core.checkpoints import Checkpoint
from tunedeck.core.run_follower import RunUpdate


# -- from panes -------------------------------------------------------------------------------
class StartRequested(Message):
    """Start a detached run of this config (paths resolved; ``source_text`` kept as run.toml)."""

    def __init__(self, config, source_text: Optional[str] = None):
        super().__init__()
        self.config = config
        self.source_text = source_text


class StopRequested(Message):
    def __init__(self, after_checkpoint: bool):
        super().__init__()
        self.after_checkpoint = after_checkpoint


class RunSwitchRequested(Message):
    """Follow the previous (-1) or next (+1) run of the project."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step


class OverlayRequested(Message):
    """Overlay the next other run's curve (or none, after the last)."""


class ResumeRequested(Message):
    """Continue the followed run from ``checkpoint``; ``iters`` extends it past its plan."""

    def __init__(self, checkpoint: Checkpoint, iters: Optional[int] = None):
        super().__init__()
        self.checkpoint = checkpoint
        self.iters = iters


class WarmStartRequested(Message):
    """Prepare a new run initialised from ``checkpoint``'s adapter weights."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint


class ChatRequested(Message):
    """Talk to the followed run's model with ``checkpoint``'s adapter."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint


class DeleteRequested(Message):
    """Delete ``checkpoint`` (the user has confirmed)."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint


class SlowerResumeRequested(Message):
    """Resume the followed run from ``checkpoint`` with ``learning_rate`` (a diverging finding's
    offer, confirmed): the App stops the run first if it is still going."""

    def __init__(self, checkpoint: int, learning_rate: float):
        super().__init__()
        self.checkpoint = checkpoint
        self.learning_rate = learning_rate


class ServingToggled(Message):
    """Start serving ``checkpoint``, or stop the server if it already serves it."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint


class ServingChanged(Message):
    """The server started (``url`` set), stopped (``url`` None) or failed (``error`` set)."""

    def __init__(self, url: Optional[str], label: str, error: Optional[str] = None,
                 iteration: Optional[int] = None):
        super().__init__()
        self.url, self.label, self.error, self.iteration = url, label, error, iteration


class FormBuilt(Message):
    """Every group of fields is mounted (the App builds the panes out of sight after it)."""


# -- from workers -----------------------------------------------------------------------------
class RunUpdated(Message):
    """The followed run (or log) gained events, output, a new status or checkpoints."""

    def __init__(self, source: str, update: RunUpdate):
        super().__init__()
        self.source = source
        self.update = update


class RunStarted(Message):
    def __init__(self, run_path: Path):
        super().__init__()
        self.run_path = run_path


class RunStopped(Message):
    def __init__(self, run_path: Path, outcome: str):
        super().__init__()
        self.run_path = run_path
        self.outcome = outcome


class OverlayLoaded(Message):
    def __init__(self, label: str, train):
        super().__init__()
        self.label = label
        self.train = train
