"""Messages the Hyperparameters pane's workers post to it: what they found (a data directory's
rows, a model's shape, the speed of earlier runs). What goes to the App is in
``tunedeck.tui.messages``; a field's edit is a call (``ConfigField``), in the key's own frame."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from textual.message import Message

from tunedeck.core.training_estimates import ModelShape


class TrainRowsCounted(Message):
    def __init__(self, data: str, rows: Optional[int], problem: Optional[str]):
        super().__init__()
        self.data = data
        self.rows = rows
        self.problem = problem


class ModelInspected(Message):
    def __init__(self, model: str, location: Optional[Path], shape: Optional[ModelShape]):
        super().__init__()
        self.model = model
        self.location = location
        self.shape = shape


class SpeedMeasured(Message):
    def __init__(self, model: str, speed):
        super().__init__()
        self.model = model
        self.speed = speed
