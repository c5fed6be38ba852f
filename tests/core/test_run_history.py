"""When a followed run counts as stalled: a silence longer than its own pace allows."""

from tunedeck.core.events import Train, Val
from tunedeck.core.run_history import RunHistory

T0 = 1_000_000.0


def test_a_validation_pause_does_not_put_off_stalled_by_minutes():
    # Reports every 10 s (10 steps at 1 it/s), one 60 s validation after the fifth: the gap
    # around it is the validation, allowed for on its own; counted as a slow interval too, it
    # stayed the slowest of the window and a hung run said "running" for seven minutes.
    history = RunHistory()
    at = T0
    for k in range(1, 11):
        at += 10
        events = [Train(iter=10 * k, loss=3.0, it_per_sec=1.0)]
        if k == 6:
            at += 60
            events.insert(0, Val(iter=60, loss=2.9, seconds=60.0))
        history.add(events, arrived_at=at)
    allowed = 5 * 10 + 60  # five usual intervals, and the longest validation
    assert not history.is_stalled(at + allowed - 5)
    assert history.is_stalled(at + allowed + 5)


def test_a_validation_slower_than_it_said_still_counts_its_extra_as_pace():
    # The gap minus the validation's own time: what is left is part of the run's pace.
    history = RunHistory()
    at = T0
    for k in range(1, 4):
        at += 10
        events = [Train(iter=10 * k, loss=3.0, it_per_sec=1.0)]
        if k == 3:
            at += 40  # a validation that said 20 s: 20 s of its gap are unexplained
            events.insert(0, Val(iter=30, loss=2.9, seconds=20.0))
        history.add(events, arrived_at=at)
    assert history.slowest_interval() == 30.0
