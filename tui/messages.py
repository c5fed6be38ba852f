"""Messages that travel up to the App, named for what happened.

Panes post what the user asked for; the App's workers post what came of it. Thread workers only
ever post these (``post_message`` is the one thread-safe call into the UI).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from textual.message import Message

if TYPE_CHECKING:
    # Annotations only: importing the follower here would load it before the form's first frame.
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


class CheckpointRequest(Message):
    """What the user asked for one checkpoint of the followed run (the Checkpoints pane's keys)."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint


class ResumeRequested(CheckpointRequest):
    """Continue the followed run from ``checkpoint``; ``iters`` extends it past its plan."""

    def __init__(self, checkpoint: Checkpoint, iters: Optional[int] = None):
        super().__init__(checkpoint)
        self.iters = iters


class WarmStartRequested(CheckpointRequest):
    """Prepare a new run initialised from ``checkpoint``'s adapter weights."""


class ChatRequested(CheckpointRequest):
    """Talk to the followed run's model with ``checkpoint``'s adapter."""


class DeleteRequested(CheckpointRequest):
    """Delete ``checkpoint`` (the user has confirmed)."""


class SlowerResumeRequested(Message):
    """Resume the followed run from ``checkpoint`` with ``learning_rate`` (a diverging finding's
    offer, confirmed): the App stops the run first if it is still going."""

    def __init__(self, checkpoint: int, learning_rate: float):
        super().__init__()
        self.checkpoint = checkpoint
        self.learning_rate = learning_rate


class ServingToggled(CheckpointRequest):
    """Start serving ``checkpoint``, or stop the server if it already serves it."""


class ServingChanged(Message):
    """The server started (``url`` set), stopped (``url`` None) or failed (``error`` set)."""

    def __init__(self, url: Optional[str], label: str, error: Optional[str] = None,
                 iteration: Optional[int] = None):
        super().__init__()
        self.url, self.label, self.error, self.iteration = url, label, error, iteration


class EvaluationRequested(CheckpointRequest):
    """Evaluate the followed run's ``checkpoint`` against its base model (the App's model
    sessions run it and show it on an evaluation screen)."""


class EvaluationStopRequested(Message):
    """The evaluation screen's stop: ``serial`` is the evaluation it shows."""

    def __init__(self, serial: int):
        super().__init__()
        self.serial = serial


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


class WorkProgressed(Message):
    """How far an App worker's request ``serial`` has got (``fraction`` None: not known). A newer
    one replaces a pending older one of the same kind and request: only the latest is worth
    drawing."""

    def __init__(self, serial: int, text: str, fraction: Optional[float]):
        super().__init__()
        self.serial = serial
        self.text = text
        self.fraction = fraction

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, WorkProgressed) and type(message) is type(self)
                and message.serial == self.serial)


class EvaluationProgressed(WorkProgressed):
    """How far the evaluation ``serial`` has got."""


class EvaluationFinished(Message):
    """The evaluation ``serial`` ended: its ``report``, saved to ``path``."""

    def __init__(self, serial: int, report, path: Path):
        super().__init__()
        self.serial = serial
        self.report = report
        self.path = path
