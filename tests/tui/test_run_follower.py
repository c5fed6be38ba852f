"""Following a run: woken by the filesystem's events, else by a slow poll, through replacements."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path

import pytest

from tunedeck.core.events import EventWriter, Train
from tunedeck.core.rundir import RunDirectory
from tunedeck.core import run_follower
from tunedeck.core.run_follower import FileChanges, RunFollower

# Generous: the machine is shared. A follower that works answers in well under a second.
DEADLINE_S = 60.0
# Longer than any test: an update that comes must have come through an event.
NEVER_S = 3600.0


def copy_of_finished_run(finished_project: Path, tmp_path: Path) -> RunDirectory:
    [source] = (finished_project / "runs").iterdir()
    shutil.copytree(source, tmp_path / source.name)
    return RunDirectory(tmp_path / source.name)


class Following:
    """``RunFollower.updates`` in a thread of its own, as the app's worker runs it."""

    def __init__(self, run: RunDirectory, **options):
        self.updates: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(run, options), daemon=True)
        self._thread.start()

    def _follow(self, run: RunDirectory, options: dict) -> None:
        for update in RunFollower(run).updates(self.cancelled.is_set, **options):
            self.updates.put(update)

    def next_train_iters(self) -> list[int]:
        """The train iterations of the next update that has any."""
        deadline = time.monotonic() + DEADLINE_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                update = self.updates.get(timeout=left)
            except queue.Empty:
                break
            iters = [e.iter for e in update.events if isinstance(e, Train)]
            if iters:
                return iters
        raise AssertionError("no train report reached the follower")

    def stop(self) -> None:
        self.cancelled.set()
        self._thread.join(DEADLINE_S)
        assert not self._thread.is_alive(), "the follower did not stop when cancelled"


def report(run: RunDirectory, iteration: int) -> None:
    with EventWriter(run.metrics_jsonl) as writer:
        writer.append(Train(iter=iteration, loss=1.0))


@pytest.fixture
def following():
    started = []

    def start(run: RunDirectory, **options) -> Following:
        started.append(Following(run, **options))
        return started[-1]

    yield start
    for follower in started:
        follower.stop()


def test_a_report_wakes_the_follower_through_an_event(finished_project, tmp_path, following):
    run = copy_of_finished_run(finished_project, tmp_path)
    follower = following(run, poll_s=NEVER_S, ended_poll_s=NEVER_S)
    assert follower.next_train_iters()[-1] == 40  # the history
    report(run, 41)
    # Seen by the look that follows the start of the watch, or through an event.
    assert follower.next_train_iters() == [41]
    # Written after that look: only an event can bring it before the poll, an hour away.
    report(run, 42)
    assert follower.next_train_iters() == [42]


def test_without_events_the_follower_polls(finished_project, tmp_path, following):
    # A filesystem that sends no events (a network mount): the slow poll alone follows the run.
    run = copy_of_finished_run(finished_project, tmp_path)
    follower = following(run, poll_s=0.2, ended_poll_s=0.2, events=False)
    assert follower.next_train_iters()[-1] == 40
    for iteration in (41, 42):
        report(run, iteration)
        assert follower.next_train_iters() == [iteration]


def test_a_run_directory_not_there_yet_is_polled_then_watched(tmp_path, following):
    run = RunDirectory(tmp_path / "run")
    follower = following(run, poll_s=0.2)
    run.path.mkdir()
    report(run, 1)
    assert follower.next_train_iters() == [1]  # found by the poll (nothing to watch before)
    report(run, 2)
    assert follower.next_train_iters() == [2]


def test_a_replaced_run_directory_is_watched_anew(finished_project, tmp_path):
    # A run directory moved aside and another put in its place (a restore, a sync tool): the
    # old watch sees nothing of the new one.
    run = copy_of_finished_run(finished_project, tmp_path)
    give_up = threading.Timer(DEADLINE_S, (stop := threading.Event()).set)  # a failure, not a hang
    give_up.start()
    changes = FileChanges(run.path, stop.is_set, poll_s=NEVER_S)
    assert changes.start() and changes.watching
    os.rename(run.path, tmp_path / "moved-aside")
    shutil.copytree(tmp_path / "moved-aside", run.path)
    try:
        assert changes.wait()  # a new watch on the new directory: look again
        # Written once the new watch is there (it gathers events between waits too).
        report(run, 41)
        assert changes.wait()  # through the new watch: the poll is an hour away
        assert not stop.is_set()
    finally:
        give_up.cancel()
        changes.close()


def test_a_watch_that_cannot_start_falls_back_to_the_poll(tmp_path, monkeypatch, caplog):
    # The kernel's limit of watches reached (inotify says ENOSPC): poll, say so once.
    import watchfiles._rust_notify

    class NoWatches:
        def __init__(self, *args):
            raise OSError(28, "OS file watch limit reached")

    monkeypatch.setattr(watchfiles._rust_notify, "RustNotify", NoWatches)
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    stop = threading.Event()
    changes = FileChanges(run.path, stop.is_set, poll_s=0.05)
    with caplog.at_level(logging.WARNING, logger=run_follower.__name__):
        assert not changes.start()
        assert not changes.wait() and not changes.wait()
    assert not changes.watching
    assert len([r for r in caplog.records if "watching" in r.getMessage()]) == 1


def test_a_cancelled_follower_stops_while_it_waits(finished_project, tmp_path):
    run = copy_of_finished_run(finished_project, tmp_path)
    for events in (True, False):
        follower = Following(run, poll_s=NEVER_S, ended_poll_s=NEVER_S, events=events)
        assert follower.next_train_iters()[-1] == 40
        follower.stop()  # asserts the thread ended


def test_watchfiles_steps_quickly_only_while_the_directory_changes(finished_project, tmp_path, monkeypatch):
    # Each step wakes the thread: a quick step kept while nothing changes cost an idle app
    # 40 wake-ups a second.
    run = copy_of_finished_run(finished_project, tmp_path)
    give_up = threading.Timer(DEADLINE_S, (stop := threading.Event()).set)
    give_up.start()
    changes = FileChanges(run.path, stop.is_set, poll_s=NEVER_S)
    try:
        assert changes.step_ms() == run_follower.QUIET_STEP_MS  # no change seen yet
        assert changes.start()
        report(run, 41)
        assert changes.wait() and not stop.is_set()
        assert changes.step_ms() == run_follower.WATCH_STEP_MS
        later = time.monotonic() + run_follower.QUIET_AFTER_S + 1
        monkeypatch.setattr(run_follower.time, "monotonic", lambda: later)
        assert changes.step_ms() == run_follower.QUIET_STEP_MS
    finally:
        give_up.cancel()
        changes.close()


def test_a_run_that_reports_more_than_once_a_second_is_watched_in_short_steps(tmp_path, monkeypatch):
    # A line reaches the follower one to two steps after it is written: at 25 ms steps, a run
    # reporting every 50 ms had a report's first 25-50 ms of latency spent there.
    clock = [1000.0]
    monkeypatch.setattr(run_follower.time, "monotonic", lambda: clock[0])
    changes = FileChanges(tmp_path, lambda: False)

    def changed_after(gap_s: float) -> None:
        clock[0] += gap_s
        changes._gap, changes._changed_at = (gap_s if changes._changed_at is not None else 0.0), clock[0]

    changed_after(0.0)
    changed_after(0.05)
    assert changes.step_ms() == run_follower.FAST_STEP_MS
    clock[0] += run_follower.FAST_GAP_S  # a pause: no longer a fast run, still a changing one
    assert changes.step_ms() == run_follower.WATCH_STEP_MS
    changed_after(5.0)  # a run reporting every 5 s keeps the 25 ms step between its reports
    assert changes.step_ms() == run_follower.WATCH_STEP_MS


def test_an_ended_run_is_not_asked_for_its_state_at_every_look(finished_project, tmp_path, monkeypatch):
    # A finished run changes only with its status file: reading its state (and a running run's
    # lock) once a second was work for nothing.
    run = copy_of_finished_run(finished_project, tmp_path)
    asked = []
    state = RunDirectory.state
    monkeypatch.setattr(RunDirectory, "state", lambda self: asked.append(1) or state(self))
    now = [time.time()]
    monkeypatch.setattr(run_follower.time, "time", lambda: now[0])
    follower = RunFollower(run)
    assert follower.poll().state == "finished" and not follower.training
    for _ in range(5):
        now[0] += 2 * run_follower.STATE_CHECK_S
        follower.poll()
    assert len(asked) == 1
    run.update_status(state="starting")  # a resume rewrites it
    assert follower.poll().state in ("starting", "interrupted") and follower.training
    now[0] += 2 * run_follower.STATE_CHECK_S
    follower.poll()
    assert len(asked) == 3  # a run that may train is looked at once a second again


def test_updates_given_while_the_ui_is_behind_reach_it_as_one_with_every_event_in_order():
    # Each update was a message of its own: a UI thread behind a fast run handled each one (its
    # status line, its plot), and fell further behind.
    from tunedeck.core.run_follower import Handover, RunUpdate

    handover = Handover()
    first = RunUpdate(events=[Train(iter=1, loss=2.0)], log_lines=["a"], arrived_at=10.0)
    assert handover.give(first)  # posted
    assert not handover.give(RunUpdate(events=[Train(iter=2, loss=1.9)], status={"state": "running"},
                                       arrived_at=11.0))
    assert not handover.give(RunUpdate(events=[Train(iter=3, loss=1.8)], log_lines=["b"], state="running",
                                       arrived_at=12.0))
    taken = first.take()
    assert [e.iter for e in taken.events] == [1, 2, 3]
    assert taken.log_lines == ["a", "b"]
    assert taken.status == {"state": "running"} and taken.state == "running"
    assert taken.arrived_at == 10.0  # when the first of them came
    # Taken: what comes next is posted, and the taken update no longer changes.
    later = RunUpdate(events=[Train(iter=4, loss=1.7)], state="finished", arrived_at=13.0)
    assert handover.give(later)
    assert [e.iter for e in taken.events] == [1, 2, 3] and taken.state == "running"


def test_live_updates_are_not_merged_into_the_backlog():
    from tunedeck.core.run_follower import Handover, RunUpdate

    handover = Handover()
    assert handover.give(RunUpdate(events=[Train(iter=1, loss=2.0)], backlog=True))
    assert handover.give(RunUpdate(events=[Train(iter=2, loss=1.9)], arrived_at=11.0))  # its arrival counts
