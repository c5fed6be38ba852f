"""When the clock changes a status line: the tick that repaints it lands just after each change
of the text it shows, never a change missed, and beyond an hour about once a minute."""

from __future__ import annotations

from typing import Optional

import pytest

from tunedeck.core.status_text import RunFigures, clock_changes_in, status_figures

START = 1_800_000_000.0  # epoch seconds, on a minute


class Run:
    """A run started at START whose ETA counts down to ``ends_at`` (its finish time shown or
    not), at the time ``now``."""

    def __init__(self, ends_at: Optional[float], finish_shown: bool = True):
        self.ends_at, self.finish_shown = ends_at, finish_shown

    def figures(self, now: float) -> RunFigures:
        return RunFigures(state="running", elapsed_s=now - START,
                          eta_s=None if self.ends_at is None else max(0.0, self.ends_at - now),
                          finish_at=self.ends_at if self.finish_shown else None)

    def shown(self, now: float) -> list[str]:
        return status_figures(self.figures(now), now)


def ticks(run: Run, now: float, seconds: float) -> tuple[int, int]:
    """(ticks, ticks that found a change) over ``seconds`` from ``now``; fails on a change missed."""
    count = changed = 0
    end = now + seconds
    while now < end:
        wait = clock_changes_in(run.figures(now), now)
        assert wait is not None and wait > 0
        before = run.shown(now)
        for fraction in (0.25, 0.5, 0.75):
            # Nothing changes between a look and the next tick...
            assert run.shown(now + fraction * (wait - 0.03)) == before, (now - START, wait)
        assert run.shown(now + wait - 0.03) == before, (now - START, wait)
        now += wait
        count += 1
        changed += run.shown(now) != before
    return count, changed


@pytest.mark.parametrize("elapsed", [0.0, 3.3, 59.7, 100.49, 3590.2, 3599.4, 7300.0])
def test_the_elapsed_time_alone_ticks_just_after_each_change(elapsed):
    count, changed = ticks(Run(ends_at=None), START + elapsed, 130)
    assert count == changed  # ...and each tick finds the text changed


@pytest.mark.parametrize("elapsed, left", [(59.7, 125.2), (12.0, 3599.6), (100.49, 59.51),
                                           (3599.4, 7200.9), (7300.0, 3615.6)])
def test_an_eta_counting_down_ticks_just_after_each_change(elapsed, left):
    now = START + elapsed
    count, changed = ticks(Run(ends_at=now + left, finish_shown=False), now, 130)
    assert count == changed


def test_beyond_an_hour_the_line_changes_about_once_a_minute():
    now = START + 2 * 3600 + 17.0
    run = Run(ends_at=now + 3 * 3600 + 5.0)
    count, changed = ticks(run, now, 600)
    # Elapsed, ETA and finish time each to the minute, so at most four looks a minute (the
    # finish time's two are in case it moves: an ETA held at its floor).
    assert 10 <= changed <= count <= 40


def test_under_an_hour_the_line_changes_each_second():
    now = START + 61.2
    count, changed = ticks(Run(ends_at=now + 300.7), now, 60)
    assert changed >= 60 and count <= 2 * 60 + 4


def test_a_line_with_no_figure_of_the_clock_needs_no_tick():
    assert clock_changes_in(RunFigures(state="running", iteration=3, loss=1.5), START) is None
