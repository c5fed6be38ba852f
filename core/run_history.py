"""What the Training pane knows about a run, built from its events as they arrive.

Plain Python, no Textual. Iterations are global; a resume from an earlier checkpoint makes what
was logged after it history that no longer leads to the current weights, so it is cut, as
``core.checkpoints.current_history`` does.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Optional

from .eta import EtaEstimator
from .events import End, Error, Event, Health, Progress, Resume, Start, Train, Val

# "Stalled": no event for this many of the slowest recent intervals between reports (plus the
# longest validation seen, since a validation is a long silence that is not a stall).
STALL_INTERVALS = 5
MIN_STALL_S = 30.0
# How many recent reports the slowest interval is taken from.
RECENT_REPORTS = 20


@dataclass
class Series:
    iters: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, iteration: int, value: float) -> None:
        if self.iters and iteration <= self.iters[-1]:
            self.cut(iteration - 1)
        self.iters.append(iteration)
        self.values.append(value)

    def cut(self, iteration: int) -> None:
        """Forget every point after ``iteration``."""
        keep = bisect.bisect_right(self.iters, iteration)
        del self.iters[keep:], self.values[keep:]

    def __len__(self) -> int:
        return len(self.iters)


class RunHistory:
    def __init__(self):
        self.train = Series()
        self.val = Series()
        self.lr = Series()
        self.total_iters = 0
        self.iteration = 0
        self.last_train: Optional[Train] = None
        self.ended: Optional[str] = None     # the state of the last "end" event
        self.error: Optional[str] = None
        self.eta = EtaEstimator()
        # The time between train reports reaching us, validations taken out (live runs only).
        self.arrival_gaps: list[float] = []
        self._last_train_arrival: Optional[float] = None
        self._val_s_since_train = 0.0
        self.report_seconds: list[float] = []  # each report's own time: its steps over its it/s
        self.last_arrival: Optional[float] = None
        self.longest_val_s = 0.0
        self.findings: list[Health] = []     # the health monitor's and answer checks', in order

    def add(self, events: list[Event], arrived_at: Optional[float] = None) -> None:
        """``arrived_at`` is None for history read at once (its timing says nothing)."""
        for event in events:
            self.eta.observe(event, arrived_at)
            if arrived_at is not None:
                self.last_arrival = arrived_at
            if isinstance(event, Train):
                if event.it_per_sec and self.last_train is not None and event.iter > self.last_train.iter:
                    self.report_seconds.append((event.iter - self.last_train.iter) / event.it_per_sec)
                    del self.report_seconds[:-RECENT_REPORTS]
                self.iteration = event.iter
                self.last_train = event
                self.train.add(event.iter, event.loss)
                if event.lr is not None:
                    self.lr.add(event.iter, event.lr)
                if arrived_at is not None:
                    if self._last_train_arrival is not None:
                        # A validation in between is allowed for apart (longest_val_s): counted
                        # here too, the gap after each one would stay the slowest of the window
                        # and put off "stalled" by minutes.
                        gap = arrived_at - self._last_train_arrival - self._val_s_since_train
                        self.arrival_gaps.append(max(0.0, gap))
                        del self.arrival_gaps[:-RECENT_REPORTS]
                    self._last_train_arrival = arrived_at
                    self._val_s_since_train = 0.0
            elif isinstance(event, Val):
                self.val.add(event.iter, event.loss)
                self.longest_val_s = max(self.longest_val_s, event.seconds or 0.0)
                self._val_s_since_train += event.seconds or 0.0
            elif isinstance(event, Start):
                self.total_iters = event.total_iters or self.total_iters
                self.ended = self.error = None
            elif isinstance(event, Resume):
                cut = event.iter or 0
                for series in (self.train, self.val, self.lr):
                    series.cut(cut)
                self.iteration = cut
                # Findings about what was cut are about weights the run no longer leads to
                # (as core.checkpoints.health_findings).
                self.findings = [h for h in self.findings if h.iter is None or h.iter <= cut]
                # The pause before a resume is not a usual interval.
                self.arrival_gaps.clear()
                self._last_train_arrival = None
                self.report_seconds.clear()
            elif isinstance(event, Progress) and event.phase == "train":
                # A progress bar counts between loss reports (logs of mlx-lm 0.32).
                self.iteration = max(self.iteration, event.done)
                if event.total and not self.total_iters:
                    self.total_iters = event.total
            elif isinstance(event, Health):
                self.findings.append(event)
            elif isinstance(event, Error):
                self.error = event.message
            elif isinstance(event, End):
                self.ended = event.state

    def best_val(self) -> Optional[tuple[int, float]]:
        if not self.val.values:
            return None
        i = min(range(len(self.val.values)), key=lambda k: (self.val.values[k], self.val.iters[k]))
        return self.val.iters[i], self.val.values[i]

    def slowest_interval(self) -> Optional[float]:
        """The longest recent time between two reports, as the run measured it (its steps over
        its it/s) or as they reached the follower: a step slowed by a busy machine, or reports
        read two at a time (the gap between them is nothing, the next one twice as long), is
        part of the run's usual pace, not a sign it hangs."""
        known = self.report_seconds + self.arrival_gaps
        return max(known) if known else None

    def is_stalled(self, now: float) -> bool:
        slowest = self.slowest_interval()
        if slowest is None or self.last_arrival is None:
            return False
        allowed = max(MIN_STALL_S, STALL_INTERVALS * slowest + self.longest_val_s)
        return now - self.last_arrival > allowed
