"""The text of a run's status, one figure at a time: what the Training pane's status line shows and
what ``tunedeck train`` redraws under a foreground run's log, so the two never say it differently.

Each figure is a separate string: the pane wraps between figures, never inside one; the command
joins them on one line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from .eta import format_duration
from .text import loss_text

SEPARATOR = " · "
# A duration is shown to the second under an hour, to the minute from then on (format_duration).
HOUR_S = 3600
# A tick lands this long after the moment a figure's text changes, never just before it.
AFTER_CHANGE_S = 0.02


@dataclass
class RunFigures:
    """What a status line shows; every field may be unknown."""

    name: str = ""
    state: str = "no run"
    iteration: int = 0
    total_iters: int = 0
    loss: Optional[float] = None
    tokens_per_sec: Optional[float] = None
    peak_mem_gb: Optional[float] = None
    elapsed_s: Optional[float] = None
    eta_s: Optional[float] = None
    finish_at: Optional[float] = None   # epoch seconds
    error: Optional[str] = None
    note: str = ""                      # e.g. "stopping after the next checkpoint"
    serving: str = ""                   # the URL of the model server the App runs, if any
    ranks: int = 1                      # processes training the run together (world size)


def rate(tokens_per_sec: float) -> str:
    return f"{tokens_per_sec / 1000:.1f}k" if tokens_per_sec >= 1000 else f"{tokens_per_sec:.0f}"


def finish_time(at: float, now: float) -> str:
    local, today = time.localtime(at), time.localtime(now)
    same_day = local[:3] == today[:3]
    return time.strftime("%H:%M" if same_day else "%a %H:%M", local)


def status_figures(f: RunFigures, now: float, shown=str) -> list[str]:
    """The figures of ``f`` in the order they are read. ``shown`` makes text from the run (its
    name, an error) safe for where it is shown (the pane escapes control characters)."""
    parts = [shown(f.name)] if f.name else []
    if f.total_iters:
        parts.append(f"iter {f.iteration}/{f.total_iters} ({100 * f.iteration / f.total_iters:.0f}%)")
    elif f.iteration:
        parts.append(f"iter {f.iteration}")
    if f.loss is not None:
        parts.append(f"loss {loss_text(f.loss)}")
    if f.ranks > 1:
        parts.append(f"{f.ranks} ranks")
    if f.tokens_per_sec is not None:
        # With several ranks mlx-lm reports the tokens of them all: say so.
        parts.append(f"{rate(f.tokens_per_sec)} tok/s" + (" total" if f.ranks > 1 else ""))
    if f.peak_mem_gb is not None:
        parts.append(f"peak {f.peak_mem_gb:.2f} GB")
    if f.elapsed_s is not None:
        parts.append(f"elapsed {format_duration(f.elapsed_s)}")
    if f.eta_s is not None:
        parts.append(f"ETA {format_duration(f.eta_s)}")
    if f.finish_at is not None:
        parts.append(f"finish {finish_time(f.finish_at, now)}")
    if f.note:
        parts.append(f.note)
    if f.serving:
        parts.append(f"serving {f.serving}")
    if f.error:
        parts.append(f"error: {shown(f.error)}")
    return parts


def clock_changes_in(f: RunFigures, now: float) -> Optional[float]:
    """Seconds until the clock alone changes what ``status_figures(f, now)`` shows, or None when
    no figure shown moves with it: the elapsed time counting up, the ETA counting down, the
    finish time's minute. Under an hour that is each second; beyond, each minute, so a long run
    repaints its status line once a minute instead of 60 times.

    Each figure is taken to move (elapsed and ETA one second per second, the finish time by the
    minute, and today's date with the clock): one that stands still (a run that ended, an ETA held at its floor) costs its caller
    a look that finds the same text, never a change missed."""
    waits = []
    if f.elapsed_s is not None:
        waits.append(_until_counted_up(f.elapsed_s))
    if f.eta_s is not None and round(f.eta_s) > 0:
        waits.append(_until_counted_down(f.eta_s))
    if f.finish_at is not None:
        # Its minute, and today's date (a finish on another day shows the day): time zones are
        # whole minutes from UTC, so both turn on a minute of the epoch.
        waits.extend((60 - f.finish_at % 60, 60 - now % 60))
    return min(waits) + AFTER_CHANGE_S if waits else None


def _until_counted_up(seconds: float) -> float:
    shown = int(round(seconds))
    step = 1 if shown < HOUR_S else 60
    # The next value shown, reached half a second before it (format_duration rounds).
    return (shown // step + 1) * step - 0.5 - seconds


def _until_counted_down(seconds: float) -> float:
    shown = int(round(seconds))
    step = 1 if shown < HOUR_S else 60
    # Below the first value of this second (or minute) the one before it shows.
    return seconds - (shown // step * step - 0.5)
