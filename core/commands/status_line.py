"""The one-line live status under a foreground run's log: iteration/total, loss, tokens/s, ETA;
for a run on several ranks, how many and the tokens/s of them all. Its figures are the Training
pane's (``core.status_text``)."""

from __future__ import annotations

import sys
import time

from ..eta import EtaEstimator
from ..events import EventFileReader, Start, Train
from ..status_text import SEPARATOR, RunFigures, status_figures


class StatusLine:
    """Redrawn in place on a terminal; silent when stderr is not one (logs stay clean)."""

    def __init__(self, run, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.reader = EventFileReader(run.metrics_jsonl)
        self.eta = EtaEstimator()
        self.run = run
        self.ranks = 1
        self.total = run.read_status().get("total_iters")
        self.last_train: Train | None = None
        self.shown = False

    def text(self, now: float) -> str:
        for event in self.reader.read_new():
            self.eta.observe(event, now)
            if isinstance(event, Train):
                self.last_train = event
            elif isinstance(event, Start) and event.total_iters:
                self.total = event.total_iters
        t = self.last_train
        if t is None:
            return "starting…"
        if self.ranks == 1:
            # The supervisor records the world size when the ranks start, after this line was made.
            self.ranks = int(self.run.read_status().get("world_size") or 1)
        estimate = self.eta.estimate(now)
        left, finish = estimate if estimate is not None else (None, None)
        figures = RunFigures(state="running", iteration=t.iter, total_iters=self.total or 0, loss=t.loss,
                             tokens_per_sec=t.tokens_per_sec or None, ranks=self.ranks, eta_s=left,
                             finish_at=finish)
        return SEPARATOR.join(status_figures(figures, now))

    def refresh(self) -> None:
        if not self.enabled:
            return
        self.stream.write("\r\x1b[2K\x1b[7m " + self.text(time.time()) + " \x1b[0m")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False
