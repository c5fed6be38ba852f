"""Time left in a training run, validation pauses and checkpoint saves included.

time left = remaining iterations × seconds per iteration
          + remaining validations × seconds per validation
          + remaining checkpoint saves × seconds per save

Each rate comes from recent history (a window over the last iterations), never from a global
average, so a run that slows down (or speeds up) is estimated at its current pace.

mlx-lm's schedule: a validation runs before step 1, before every multiple of ``steps_per_eval``
and before the last step; a checkpoint is saved after every multiple of ``save_every``. When the
caller does not know these settings, they are read off the events (the first validation after
iteration 1, the first numbered save).

Two sources of timing, used together:

* the log alone: ≤0.31 prints It/sec and "Val took"; 0.32 prints tok/s and cumulative tokens
  (seconds per iteration = tokens per iteration ÷ tok/s) and the validation's seconds;
* arrival times, when events are observed as they happen: wall-clock seconds between
  iterations (validation and save pauses taken out), preferred when present because they
  include everything the process spends per step. Only pass arrival times for live events —
  a backlog read in one go arrives all at once and says nothing about speed.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Deque, Optional, Tuple

from .events import End, Error, Event, Progress, Resume, Save, Start, Train, Val

# mlx_lm.lora's defaults, assumed until the events show otherwise.
DEFAULT_STEPS_PER_EVAL = 200
DEFAULT_STEPS_PER_REPORT = 10


class _Window:
    """Recent (amount, seconds) samples: at least ``min_samples`` and ``span`` amounts' worth."""

    def __init__(self, span: float, min_samples: int = 3) -> None:
        self._span = span
        self._min = min_samples
        self._items: Deque[Tuple[float, float]] = deque()
        self._amount = 0.0
        self._seconds = 0.0

    def add(self, amount: float, seconds: float) -> None:
        self._items.append((amount, seconds))
        self._amount += amount
        self._seconds += seconds
        while len(self._items) > self._min and self._amount - self._items[0][0] >= self._span:
            old_amount, old_seconds = self._items.popleft()
            self._amount -= old_amount
            self._seconds -= old_seconds

    def rate(self) -> Optional[float]:
        """Seconds per unit over the window, or None when empty."""
        return self._seconds / self._amount if self._amount > 0 else None


class EtaEstimator:
    """Feed it events in order with ``observe``; ask ``estimate(now)``.

    ``total_iters``, ``steps_per_eval``, ``save_every`` and ``steps_per_report`` are the run's
    settings when the caller knows them (the runner does); otherwise they come from the events.
    ``window_iters`` is how many recent iterations the per-iteration rate averages over.
    """

    def __init__(self, total_iters: Optional[int] = None, steps_per_eval: Optional[int] = None,
                 save_every: Optional[int] = None, steps_per_report: Optional[int] = None,
                 window_iters: int = 50) -> None:
        self._given_eval = steps_per_eval
        self._given_save = save_every
        self._given_report = steps_per_report
        self.total_iters = total_iters
        self._log_rate = _Window(window_iters)
        self._wall_rate = _Window(window_iters)
        self._val_seconds = _Window(0)  # the last three validations
        self._save_seconds = _Window(0)
        self._ended: Optional[str] = None  # "finished", "failed" or "stopped" once it is over
        self._t_last: Optional[float] = None  # arrival of the latest event
        self._t_ref: Optional[float] = None  # arrival of the latest change of position
        self._new_segment()

    def _new_segment(self) -> None:
        """A run starts (or resumes): positions restart, measured speeds stay."""
        self._base = 0  # iterations done before this segment's first step (global numbering)
        self.position = 0  # iterations completed
        self._last_val = 0  # iteration of the latest validation (it runs before that step)
        self._has_val: Optional[bool] = None
        self._eval_every = self._given_eval
        self._save_every = self._given_save
        self._report_every = self._given_report
        self._prev_train: Optional[Train] = None
        self._live_progress = False
        self._anchor: Optional[Tuple[int, float]] = None  # (position, arrival) for wall timing
        self._pause = 0.0  # validation/save seconds since the anchor
        self._train_arrival: Optional[Tuple[int, float]] = None
        self._resumed_from: Optional[int] = None

    # -- input ---------------------------------------------------------------------------

    def observe(self, event: Event, arrival_time: Optional[float] = None) -> None:
        if arrival_time is not None:
            self._t_last = arrival_time
        if isinstance(event, Train):
            self._on_train(event, arrival_time)
        elif isinstance(event, Val):
            self._on_val(event, arrival_time)
        elif isinstance(event, Progress):
            if event.phase == "train":
                if event.total:
                    self.total_iters = event.total
                if event.done >= self.position:
                    self._live_progress = True
                    self._advance(event.done, arrival_time)
        elif isinstance(event, Save):
            self._on_save(event, arrival_time)
        elif isinstance(event, Start):
            if event.total_iters:
                self.total_iters = event.total_iters
            resumed = self._resumed_from
            self._new_segment()
            self._resumed_from = resumed
            self._ended = None
        elif isinstance(event, Resume):
            self._resumed_from = event.iter
        elif isinstance(event, End):
            self._ended = event.state
        elif isinstance(event, Error):
            self._ended = "failed"

    def _restart_if_back(self, done: int) -> None:
        # Iterations going backwards without a start event: a new run in the same stream.
        if done < self.position:
            self._new_segment()

    def _on_train(self, ev: Train, t: Optional[float]) -> None:
        self._restart_if_back(ev.iter)
        if self._prev_train is None and self._resumed_from and ev.iter > self._resumed_from:
            # Global numbering that continues after a resume: the segment starts there.
            self._base = self.position = self._resumed_from
        prev_iter = self._prev_train.iter if self._prev_train else self._base
        steps = ev.iter - prev_iter
        if steps > 0:
            seconds = self._logged_seconds_per_iter(ev)
            if seconds is not None:
                self._log_rate.add(steps, seconds * steps)
            if self._report_every is None or (self._prev_train and steps < self._report_every):
                self._report_every = steps
        if self._has_val is None:
            self._has_val = False  # training reported before any validation: there is none
        self._prev_train = ev
        self._advance(ev.iter, t)
        if t is not None:
            self._train_arrival = (ev.iter, t)

    def _logged_seconds_per_iter(self, ev: Train) -> Optional[float]:
        if ev.it_per_sec:
            return 1.0 / ev.it_per_sec
        if ev.tokens_per_sec and ev.trained_tokens is not None:
            prev = self._prev_train
            prev_tokens = prev.trained_tokens if prev and prev.trained_tokens is not None else 0
            prev_iter = prev.iter if prev else self._base
            tokens = ev.trained_tokens - prev_tokens
            if tokens > 0 and ev.iter > prev_iter:
                return tokens / (ev.iter - prev_iter) / ev.tokens_per_sec
        return None

    def _on_val(self, ev: Val, t: Optional[float]) -> None:
        # The validation before step N reports N: N-1 steps are done.
        self._restart_if_back(ev.iter - 1)
        self._has_val = True
        self._last_val = max(self._last_val, ev.iter)
        if ev.seconds is not None:
            self._val_seconds.add(1, ev.seconds)
            self._pause += ev.seconds
        since_start = ev.iter - self._base
        if self._eval_every is None and since_start > 1 and (
                self.total_iters is None or ev.iter < self.total_iters):
            self._eval_every = since_start
        self._advance(max(self.position, ev.iter - 1), t)

    def _on_save(self, ev: Save, t: Optional[float]) -> None:
        if ev.iter is None:
            return
        if self._save_every is None and ev.file[:1].isdigit():
            self._save_every = ev.iter - self._base if ev.iter > self._base else ev.iter
        if t is not None and self._train_arrival and self._train_arrival[0] == ev.iter:
            # Printed right after the report of the same step: the gap is the save.
            seconds = max(0.0, t - self._train_arrival[1])
            self._save_seconds.add(1, seconds)
            self._pause += seconds
        self._advance(max(self.position, ev.iter), t)

    def _advance(self, pos: int, t: Optional[float]) -> None:
        """Move to ``pos`` iterations done; with an arrival time, sample the wall-clock rate."""
        if pos > self.position:
            self.position = pos
        if t is None:
            return
        self._t_ref = t
        if self._anchor is None:
            self._anchor = (pos, t)
            self._pause = 0.0
            return
        steps = pos - self._anchor[0]
        if steps <= 0:
            return  # no step finished since the anchor: keep timing from there
        seconds = t - self._anchor[1] - self._pause
        logged = self._log_rate.rate()
        # Wall-clock time cannot beat the compute time mlx-lm measured for the same steps: a
        # much shorter gap means lines arrived in a burst (a buffered pipe), not real timing.
        if seconds > 0 and (logged is None or seconds >= 0.5 * steps * logged):
            self._wall_rate.add(steps, seconds)
        self._anchor = (pos, t)
        self._pause = 0.0

    # -- output --------------------------------------------------------------------------

    @property
    def seconds_per_iter(self) -> Optional[float]:
        wall = self._wall_rate.rate()
        return wall if wall is not None else self._log_rate.rate()

    @property
    def seconds_per_val(self) -> Optional[float]:
        return self._val_seconds.rate()

    def _remaining_vals(self, done: int) -> int:
        """Validations still to run once ``done`` steps are complete."""
        if not self._has_val or self.total_iters is None:
            return 0
        # Validations at iterations > after remain; the schedule counts from the segment's start.
        total = self.total_iters - self._base
        after = max(done, self._last_val) - self._base
        if after >= total:
            return 0
        every = self._eval_every
        if every is None and after < DEFAULT_STEPS_PER_EVAL:
            every = DEFAULT_STEPS_PER_EVAL
        count = 0
        if every:
            count += total // every - after // every
        if after < 1 and every != 1:
            count += 1  # before step 1
        if not every or total % every:
            count += 1  # before the last step
        return count

    def _remaining_saves(self, done: int) -> int:
        if not self._save_every or self.total_iters is None:
            return 0
        total, every = self.total_iters - self._base, self._save_every
        return max(0, total // every - max(done - self._base, 0) // every)

    def seconds_left_at(self, done: int) -> Optional[float]:
        """Seconds of work left once ``done`` steps are complete (None without a rate)."""
        per_iter = self.seconds_per_iter
        if per_iter is None or self.total_iters is None:
            return None
        left = max(0, self.total_iters - done) * per_iter
        left += self._remaining_vals(done) * (self.seconds_per_val or 0.0)
        left += self._remaining_saves(done) * (self._save_seconds.rate() or 0.0)
        return left

    def estimate(self, now: Optional[float] = None) -> Optional[Tuple[float, float]]:
        """``(seconds_left, finish_time)`` (epoch seconds), or None when it cannot be told yet.

        With arrival times, the time since the last event counts down the estimate, but never
        below what remains after the next event that has not arrived yet.
        """
        if now is None:
            now = self._t_last if self._t_last is not None else time.time()
        if self._ended == "finished":
            return 0.0, now
        if self._ended is not None:
            return None  # it will not finish
        left = self.seconds_left_at(self.position)
        if left is None or self.total_iters is None:
            return None
        if self._t_ref is not None and now > self._t_ref:
            # The run has not reached its next report yet, or we would have seen it.
            step = 1 if self._live_progress else (self._report_every or DEFAULT_STEPS_PER_REPORT)
            next_seen = min(self.total_iters, (self.position // step + 1) * step)
            floor = self.seconds_left_at(next_seen) or 0.0
            left = max(floor, left - (now - self._t_ref))
        return left, now + left


def estimate_from_events(events, total_iters: Optional[int] = None) -> Optional[float]:
    """Seconds left after ``events`` (a run's history, read from its log or metrics.jsonl)."""
    estimator = EtaEstimator(total_iters=total_iters)
    for event in events:
        estimator.observe(event)
    if total_iters and not estimator.total_iters:
        estimator.total_iters = total_iters
    result = estimator.estimate(now=0.0)
    return None if result is None else result[0]


def format_duration(seconds: Optional[float]) -> str:
    """``2h05m``, ``4m09s``, ``12s``; ``-`` when unknown. The one duration format: every screen
    and command shows a time so (units spelt out: "4:09" could be minutes or hours)."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
