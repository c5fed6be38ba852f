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
