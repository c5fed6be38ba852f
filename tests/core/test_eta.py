"""The ETA estimator: validation pauses and saves are part of the time left, rates follow the
recent pace, and it works both from a log alone and from live arrival times."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunedeck.core.eta import EtaEstimator, estimate_from_events
from tunedeck.core.events import End, Error, Progress, Resume, Save, Start, Train, Val
from tunedeck.core.logparse import parse_file

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"


def feed(estimator, events):
    for event in events:
        estimator.observe(event)
    return estimator


def run_031_style(upto, total=1000, every_eval=100, val_seconds=300.0, it_per_sec=1.0,
                  report=10):
    """Events as ≤0.31 prints them: a validation before step 1 and every every_eval steps."""
    events = [Start(total_iters=total)]
    for it in range(1, upto + 1):
        if it == 1 or it % every_eval == 0 or it == total:
            events.append(Val(iter=it, loss=2.0, seconds=val_seconds))
        if it % report == 0:
            events.append(Train(iter=it, loss=1.0, it_per_sec=it_per_sec))
    return events


def test_validation_pauses_are_counted():
    # 1 s per step, and a 5-minute validation every 100 steps.
    eta = feed(EtaEstimator(), run_031_style(upto=200))
    left, _ = eta.estimate(now=0.0)
    # 800 steps, plus the validations before steps 300, 400, ..., 1000.
    assert left == pytest.approx(800 * 1.0 + 8 * 300.0)
    assert left > 3 * 800  # ignoring the pauses would be off by 40 minutes


def test_schedule_counts_the_first_and_last_validation_once():
    eta = EtaEstimator(total_iters=250, steps_per_eval=100)
    feed(eta, [Val(iter=1, loss=3.0, seconds=10.0), Train(iter=10, loss=2.0, it_per_sec=1.0)])
    # Validations still ahead: before steps 100, 200 and the last one, 250.
    assert eta.estimate(now=0.0)[0] == pytest.approx(240 + 3 * 10.0)

    eta = EtaEstimator(total_iters=200, steps_per_eval=100)
    feed(eta, [Val(iter=1, loss=3.0, seconds=10.0), Train(iter=10, loss=2.0, it_per_sec=1.0)])
    assert eta.estimate(now=0.0)[0] == pytest.approx(190 + 2 * 10.0)  # 200 is both

    # No step timed yet: no estimate rather than a made-up one.
    eta = EtaEstimator(total_iters=200, steps_per_eval=100)
    eta.observe(Progress(phase="train", done=0, total=200), 0.0)
    assert eta.estimate(now=0.0) is None


def test_schedule_is_read_off_the_events_when_not_given():
    eta = feed(EtaEstimator(), run_031_style(upto=250, total=1000, every_eval=50, val_seconds=20.0))
    # Validations before 300, 350, ..., 1000: 15 of them.
    assert eta.estimate(now=0.0)[0] == pytest.approx(750 + 15 * 20.0)


def test_without_validation_set_no_pauses_are_added():
    events = [Start(total_iters=100)] + [Train(iter=i, loss=1.0, it_per_sec=2.0) for i in (10, 20)]
    assert feed(EtaEstimator(), events).estimate(now=0.0)[0] == pytest.approx(80 * 0.5)


def test_rate_follows_the_recent_pace_not_the_global_average():
    events = [Start(total_iters=1000), Val(iter=1, loss=3.0, seconds=0.0)]
    events += [Train(iter=i, loss=1.0, it_per_sec=1.0) for i in range(10, 501, 10)]
    events += [Train(iter=i, loss=1.0, it_per_sec=0.5) for i in range(510, 601, 10)]  # slowed down
    eta = feed(EtaEstimator(steps_per_eval=10_000), events)
    assert eta.seconds_per_iter == pytest.approx(2.0)
    left, _ = eta.estimate(now=0.0)
    assert left == pytest.approx(400 * 2.0)  # a global average would say ~467 s


def test_v032_rate_comes_from_tokens_per_iteration_and_tok_per_sec():
    # 0.32 prints tok/s and cumulative tokens: 500 tokens per step at 250 tok/s is 2 s/step.
    events = [Start(total_iters=100), Val(iter=1, loss=3.0, seconds=30.0)]
    events += [Train(iter=i, loss=1.0, tokens_per_sec=250.0, trained_tokens=i * 500)
               for i in (5, 10, 15, 20)]
    eta = feed(EtaEstimator(steps_per_eval=50), events)
    assert eta.seconds_per_iter == pytest.approx(2.0)
    assert eta.estimate(now=0.0)[0] == pytest.approx(80 * 2.0 + 2 * 30.0)  # vals at 50, 100


def test_live_arrival_times_give_the_rate_without_log_figures():
    # A runner-like stream with losses only; 3 s per step, a 60 s validation every 20 steps.
    eta = EtaEstimator(total_iters=100, steps_per_eval=20)
    t = 1000.0
    eta.observe(Start(total_iters=100), t)
    t += 60
    eta.observe(Val(iter=1, loss=3.0, seconds=60.0), t)
    for it in range(1, 41):
        if it % 20 == 0:
            t += 60
            eta.observe(Val(iter=it, loss=2.0, seconds=60.0), t)
        t += 3
        eta.observe(Progress(phase="train", done=it, total=100), t)
        if it % 10 == 0:
            eta.observe(Train(iter=it, loss=1.0), t)
    assert eta.seconds_per_iter == pytest.approx(3.0)
    left, finish = eta.estimate(now=t)
    assert left == pytest.approx(60 * 3.0 + 3 * 60.0)  # vals before 60, 80 and 100
    assert finish == pytest.approx(t + left)
    # Between events the clock counts the estimate down...
    assert eta.estimate(now=t + 2)[0] == pytest.approx(left - 2)
    # ...but not below what is left once the next step, not seen yet, is done.
    assert eta.estimate(now=t + 10_000)[0] == pytest.approx(59 * 3.0 + 3 * 60.0)


def test_live_saves_are_timed_and_counted():
    eta = EtaEstimator(total_iters=100, steps_per_eval=1000, save_every=10)
    t = 0.0
    eta.observe(Val(iter=1, loss=3.0, seconds=0.0), t)
    for it in range(10, 51, 10):
        t += 10 * 1.0
        eta.observe(Train(iter=it, loss=1.0), t)
        t += 4.0  # writing the checkpoint
        eta.observe(Save(iter=it, file=f"{it:07d}_adapters.safetensors"), t)
    assert eta.seconds_per_iter == pytest.approx(1.0)
    # 50 steps, the last validation (it is "before the last step") costing 0 here, 5 saves of 4 s.
    assert eta.estimate(now=t)[0] == pytest.approx(50 * 1.0 + 5 * 4.0)


def test_a_backlog_arriving_at_once_does_not_fake_a_fast_rate():
    eta = EtaEstimator()
    for event in run_031_style(upto=300, it_per_sec=0.25, val_seconds=0.0):
        eta.observe(event, 5000.0)  # a pipe flushed all of it in one go
    assert eta.seconds_per_iter == pytest.approx(4.0)


def test_resume_with_global_iterations():
    # The runner numbers iterations globally: resumed at 600, the schedule restarts there.
    events = [Resume(iter=600, source="adapters/0000600_adapters.safetensors"),
              Start(total_iters=1000), Val(iter=601, loss=2.0, seconds=50.0)]
    events += [Train(iter=i, loss=1.0, it_per_sec=1.0) for i in range(610, 651, 10)]
    eta = feed(EtaEstimator(steps_per_eval=100), events)
    assert eta.position == 650
    assert eta.estimate(now=0.0)[0] == pytest.approx(350 + 4 * 50.0)  # vals at 700 ... 1000


def test_a_new_run_in_the_same_stream_restarts_the_position():
    events = run_031_style(upto=300, total=300, val_seconds=1.0)
    events += [Start(total_iters=100), Val(iter=1, loss=2.0, seconds=1.0),
               Train(iter=10, loss=1.0, it_per_sec=1.0)]
    eta = feed(EtaEstimator(), events)
    assert eta.position == 10
    assert eta.estimate(now=0.0)[0] == pytest.approx(90 + 1.0)  # 200 by default, so only the last


def test_end_and_error():
    eta = feed(EtaEstimator(), run_031_style(upto=100))
    assert eta.estimate(now=0.0) is not None
    eta.observe(End(state="finished"))
    assert eta.estimate(now=50.0) == (0.0, 50.0)
    eta = feed(EtaEstimator(), run_031_style(upto=100) + [Error(message="KeyError: 'x'")])
    assert eta.estimate(now=0.0) is None


def test_not_enough_data():
    assert EtaEstimator().estimate(now=0.0) is None
    assert feed(EtaEstimator(), [Train(iter=10, loss=1.0, it_per_sec=1.0)]).estimate(0.0) is None
    assert feed(EtaEstimator(), [Start(total_iters=10), Train(iter=10, loss=1.0)]).estimate(0.0) is None


# -- from recorded logs alone --------------------------------------------------------------------

def actual_seconds_after(events, iteration):
    """The compute time the log itself reports for everything after ``iteration``."""
    seconds, prev_iter, prev_tokens = 0.0, 0, 0
    for e in events:
        if isinstance(e, Train):
            if e.iter > iteration:
                if e.it_per_sec:
                    seconds += (e.iter - prev_iter) / e.it_per_sec
                else:
                    seconds += (e.trained_tokens - prev_tokens) / e.tokens_per_sec
            prev_iter, prev_tokens = e.iter, e.trained_tokens
        elif isinstance(e, Val) and e.iter > iteration:
            seconds += e.seconds
    return seconds


@pytest.mark.parametrize("name", ["v031_long.log", "v032_long.log"])
def test_log_alone_predicts_the_rest_of_a_real_run(name):
    events = parse_file(LOGS / name)
    cut = next(i for i, e in enumerate(events) if isinstance(e, Train) and e.iter == 600) + 1
    eta = feed(EtaEstimator(), events[:cut])
    left, _ = eta.estimate(now=0.0)
    actual = actual_seconds_after(events, 600)
    assert actual > 50  # 600 steps of the tiny model, as logged
    assert left == pytest.approx(actual, rel=0.15)
    assert eta.seconds_per_val is not None  # the schedule (vals at 1000 and 1200) is in there


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.log")))
def test_every_recorded_log_gets_an_eta_at_every_report(name):
    events = parse_file(LOGS / name)
    eta = EtaEstimator()
    lefts = []
    for event in events:
        eta.observe(event)
        if isinstance(event, Train):
            lefts.append(eta.estimate(now=0.0))
    assert lefts and all(x is not None for x in lefts)
    assert [x[0] for x in lefts] == sorted((x[0] for x in lefts), reverse=True) or "long" in name
    if "crash" not in name:
        assert lefts[-1][0] == 0.0  # the last report is the last step
        assert estimate_from_events(events) == 0.0
    else:
        assert estimate_from_events(events) is None  # the traceback ended it


def test_estimate_from_events_uses_a_known_total():
    events = [Val(iter=1, loss=3.0, seconds=5.0), Train(iter=10, loss=2.0, it_per_sec=2.0)]
    assert estimate_from_events(events) is None
    assert estimate_from_events(events, total_iters=110) == pytest.approx(50 + 5.0)
