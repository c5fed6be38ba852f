"""When a followed run counts as stalled: a silence longer than its own pace allows."""

from tunedeck.core.events import Train, Val
from tunedeck.core.run_history import RunHistory

T0 = 1_000_000.0


def reports_10_s_apart(count: int, validation_after: int, took: float, said: float) -> tuple:
    """A history of ``count`` live reports 10 s apart (10 steps at 1 it/s), with a validation
    after report ``validation_after`` that took ``took`` seconds and said ``said``; and the
    time of the last report."""
    history, at = RunHistory(), T0
    for k in range(1, count + 1):
        at += 10
        events = [Train(iter=10 * k, loss=3.0, it_per_sec=1.0)]
        if k == validation_after + 1:
            at += took
            events.insert(0, Val(iter=10 * k, loss=2.9, seconds=said))
        history.add(events, arrived_at=at)
    return history, at


def test_a_validation_pause_does_not_put_off_stalled_by_minutes():
    # Reports every 10 s, one 60 s validation after the fifth: the gap around it is the
    # validation, allowed for on its own; counted as a slow interval too, it stayed the slowest
    # of the window and a hung run said "running" for seven minutes.
    history, at = reports_10_s_apart(10, validation_after=5, took=60, said=60.0)
    allowed = 5 * 10 + 60  # five usual intervals, and the longest validation
    assert not history.is_stalled(at + allowed - 5)
    assert history.is_stalled(at + allowed + 5)


def test_a_validation_slower_than_it_said_still_counts_its_extra_as_pace():
    # The gap minus the validation's own time: what is left is part of the run's pace.
    history, _ = reports_10_s_apart(3, validation_after=2, took=40, said=20.0)
    assert history.slowest_interval() == 30.0
