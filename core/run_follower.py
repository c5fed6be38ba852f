"""Following a run directory from outside: what it gained since the last look.

Plain Python, no Textual: the app iterates ``RunFollower.updates()`` in a thread worker and posts
what it yields. The follower sleeps until the filesystem says something under the run directory
changed (watchfiles: inotify on Linux, FSEvents on macOS), then reads what was added. It also
looks once a ``FALLBACK_POLL_S`` whatever it was told while the run trains: a filesystem that
sends no events (a network mount) is still followed at that pace, and a trainer killed without a
word (nothing is written when it dies) is noticed through the run's lock. A run that ended
(finished, failed, stopped) can only change through its status file (a resume rewrites it), so
it is looked at once an ``ENDED_POLL_S`` only.

The run directory changes under the follower: a resume from an earlier checkpoint moves later
files aside, a delete unlinks them, between the follower listing a file and reading it. Whatever
one part of a look meets is logged and that part tried again at the next look; the other parts
(the lines already read) still come, and the follower goes on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .checkpoints import Checkpoint, checkpoint_index
from .crash import Failure, run_failure
from .events import END_STATES, Event, Health, Val
from .file_tail import FileTail
from .rundir import RunDirectory

# The log can hold hours of output; the screen keeps a capped tail of it anyway.
LOG_HISTORY_BYTES = 256 * 1024
# At most this much is read per poll, so a burst never blocks the worker (or floods the UI).
READ_CHUNK_BYTES = 4 * 1024 * 1024
# How often the lock of a training run is checked for a process that died without saying so.
STATE_CHECK_S = 1.0
# The look the follower takes whatever the filesystem said: the pace on a filesystem that sends
# no events, and the wake-up that checks the lock (so equal to STATE_CHECK_S).
FALLBACK_POLL_S = STATE_CHECK_S
# The same for a run that ended (finished, failed or stopped, as its runner wrote): nothing but a
# resume changes it, and that shows through an event at once, or through this look without events.
ENDED_POLL_S = 10.0
# watchfiles looks at what the kernel reported once a step (its own loop, in Rust) and returns a
# change once a further step brought nothing new: a line reaches the follower one to two steps
# after it is written. Each step wakes the thread and takes the GIL to ask whether to stop: about
# 60-80 us of CPU on this 2-core machine at load 8 (0.3 % of a core at 25 ms steps, 0.03 % at
# 250 ms). So the step is short while the directory changes, long once it has been quiet.
WATCH_STEP_MS = 25
QUIET_STEP_MS = 250
# A run that reports faster than once a FAST_GAP_S (a small model, steps_per_report 1) keeps the
# app busy anyway, and each step of watchfiles is a step of latency: its line comes one to two
# FAST_STEP_MS after it is written instead of one to two WATCH_STEP_MS (100 wake-ups a second,
# under 1 % of a core, beside the app's tens of percent for such a run). Slower runs keep the
# 25 ms step, so following one for hours stays cheap.
FAST_STEP_MS = 10
FAST_GAP_S = 1.0
# Quiet: nothing changed for this long, nor for twice the last gap between two changes (a run
# reporting once a minute stays quick between its reports; a run paused by a long validation, or
# finished, is quiet and its next line takes up to 2 x QUIET_STEP_MS to come). A follower that has
# seen no change yet is quiet.
QUIET_AFTER_S = 10.0
# A burst (a checkpoint saves several files) is grouped for at most this long.
WATCH_DEBOUNCE_MS = 200
# Without events, how often a cancelled follower notices it must stop (a cheap check, no stat).
CANCEL_CHECK_S = 0.25
# After watchfiles failed, how long the follower polls before it tries events again.
EVENTS_RETRY_S = 30.0

log = logging.getLogger(__name__)
# Between a follower's thread merging into an update and the UI thread taking it (one lock for
# all followers: the UI takes an update without knowing which follower gave it).
_HANDOVER_LOCK = threading.Lock()


@dataclass
class RunUpdate:
    events: list[Event] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    status: Optional[dict] = None        # set when status.json changed
    state: Optional[str] = None          # set when the state a user sees changed
    checkpoints: Optional[list[Checkpoint]] = None  # set when the index may have changed
    failure: Optional[Failure] = None    # why the run ended badly, when its state says it did
    arrived_at: float = 0.0
    backlog: bool = False                # the history found on attaching, not live news
    taken: bool = field(default=False, compare=False, repr=False)  # see take()

    def __bool__(self) -> bool:
        return bool(self.events or self.log_lines or self.status is not None
                    or self.state is not None or self.checkpoints is not None)

    def take(self) -> RunUpdate:
        """This update, from now on the UI thread's alone: no later one is merged into it."""
        with _HANDOVER_LOCK:
            self.taken = True
        return self

    def absorb(self, later: RunUpdate) -> None:
        """Add what ``later`` brings, as if both had been read in one look: events and lines
        joined in order, the newest status, state, index and failure; arrived when this one did."""
        self.events.extend(later.events)
        self.log_lines.extend(later.log_lines)
        for name in ("status", "state", "checkpoints", "failure"):
            if getattr(later, name) is not None:
                setattr(self, name, getattr(later, name))


class Handover:
    """Updates given by a follower's thread to the UI thread, one message while the UI is behind.

    An update given while the last one posted is still waiting to be taken (the UI thread busy
    with a frame, a drawing, a burst of reports) is merged into it instead of posted as a message
    of its own: the UI then handles one update, with one status line and one plot to draw, where
    it handled each (and fell further behind a fast run). A backlog update and a live one are
    never merged: a live one's arrival time means something, the backlog's do not.
    """

    def __init__(self) -> None:
        self._posted: Optional[RunUpdate] = None

    def give(self, update: RunUpdate) -> bool:
        """True when ``update`` must be posted; False when it was merged into the one waiting."""
        with _HANDOVER_LOCK:
            waiting = self._posted
            if waiting is not None and not waiting.taken and waiting.backlog == update.backlog:
                waiting.absorb(update)
                return False
            self._posted = update
            return True


class _Cancel:
    """A ``cancelled()`` callable as the stop event watchfiles asks at each step."""

    def __init__(self, cancelled: Callable[[], bool]):
        self.is_set = cancelled


class FileChanges:
    """Waits until something under ``directory`` changes, or ``poll_s`` passed, or cancelled.

    Events come from watchfiles' Rust watcher, used directly as its documentation shows: it
    gathers events from the moment it is made, so ``start`` then a look misses nothing, and the
    follower's loop stays in Python, not inside watchfiles' generator. Where it cannot watch (the
    directory is not there yet, the system's limit of watches is reached, the directory was
    replaced by another of the same name) the waits are plain sleeps of ``poll_s``, and watching
    starts again when it can: a follower never depends on events, they only make it quicker.
    """

    def __init__(self, directory: Path, cancelled: Callable[[], bool], poll_s: float = FALLBACK_POLL_S,
                 events: bool = True, recursive: bool = True):
        self.directory = directory
        self.poll_s = poll_s  # the caller may change it between waits
        self.recursive = recursive
        self._changed_at: Optional[float] = None  # monotonic time of the last change an event told
        self._gap = 0.0  # between the last two changes
        self._cancelled = cancelled
        self._stop = _Cancel(cancelled)
        self._events = events
        self._notify: Any = None  # watchfiles' RustNotify, while it watches (imported late)
        self._watched: Optional[tuple[int, int]] = None  # the directory's (device, inode) then
        self._retry_at = 0.0
        self._warned = False

    @property
    def watching(self) -> bool:
        """Woken by events (else by the clock alone)."""
        return self._notify is not None

    def start(self) -> bool:
        """Watch the directory as it is now, if it can be; True when a new watch began (what
        changed before it is unknown: look)."""
        if not self._events:
            return False
        identity = self._identity()
        if self._notify is not None and identity != self._watched:
            self.close()  # replaced or gone: the old watch sees nothing of the new directory
        if self._notify is not None or identity is None or time.monotonic() < self._retry_at:
            return False
        from watchfiles._rust_notify import RustNotify  # in the worker, not before the first frame

        try:
            # paths, debug, force_polling, poll_delay_ms, recursive, ignore_permission_denied
            self._notify = RustNotify([str(self.directory)], False, False, 0, self.recursive, False)
        except Exception:
            self._failed()
            return False
        self._watched = identity
        return True

    def wait(self) -> bool:
        """True when woken by a change; False after ``poll_s`` without one, or once cancelled."""
        if self.start():
            return True
        if self._notify is None:
            self._sleep()
            return False
        try:
            found = self._notify.watch(WATCH_DEBOUNCE_MS, self.step_ms(),
                                       max(1, round(self.poll_s * 1000)), self._stop)
        except Exception:
            self._failed()
            self._sleep()
            return False
        changed = isinstance(found, set) and bool(found)  # else "timeout" or "stop"
        if changed:
            now = time.monotonic()
            if self._changed_at is not None:
                self._gap = now - self._changed_at
            self._changed_at = now
        return changed

    def step_ms(self) -> int:
        """watchfiles' step for the next wait: short while the directory changes, else long."""
        if self._changed_at is None:
            return QUIET_STEP_MS
        quiet_after = max(QUIET_AFTER_S, 2 * self._gap)
        since = time.monotonic() - self._changed_at
        if since >= quiet_after:
            return QUIET_STEP_MS
        fast = 0 < self._gap < FAST_GAP_S and since < FAST_GAP_S  # (no gap yet after a first change)
        return FAST_STEP_MS if fast else WATCH_STEP_MS

    def close(self) -> None:
        if self._notify is not None:
            self._notify.close()  # stops its thread and frees the kernel's watches
        self._notify, self._watched = None, None

    def _failed(self) -> None:
        # Said once per follower: a run followed for hours must not fill the log.
        if not self._warned:
            self._warned = True
            log.warning("watching %s for changes failed; looking every %.1f s instead",
                        self.directory, self.poll_s, exc_info=True)
        self.close()
        self._retry_at = time.monotonic() + EVENTS_RETRY_S

    def _identity(self) -> Optional[tuple[int, int]]:
        try:
            st = os.stat(self.directory)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _sleep(self) -> None:
        deadline = time.monotonic() + self.poll_s
        while not self._cancelled() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, CANCEL_CHECK_S))


def _signature(path: Path) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class RunFollower:
    def __init__(self, run: RunDirectory):
        self.run = run
        self._metrics = FileTail(run.metrics_jsonl, chunk_bytes=READ_CHUNK_BYTES)
        self._log = FileTail(run.train_log, history_bytes=LOG_HISTORY_BYTES, chunk_bytes=READ_CHUNK_BYTES)
        self._status_sig: Optional[tuple] = None
        self._adapters_sig: Optional[tuple] = None
        self._state: Optional[str] = None
        self._state_checked = 0.0
        self._first = True
        self._failing: set[str] = set()  # the parts whose last read failed

    def updates(self, cancelled: Callable[[], bool], poll_s: float = FALLBACK_POLL_S,
                events: bool = True, ended_poll_s: float = ENDED_POLL_S) -> Iterator[RunUpdate]:
        """Each update as the run's files change, the history first, until ``cancelled()``.

        Whatever the events, a look every ``poll_s`` while the run trains, every
        ``ended_poll_s`` once it ended; ``events=False`` only polls.
        """
        # The history comes first; the watch starts with the first wait, which then returns at
        # once: the look after it finds whatever was written before the watch began.
        changes = FileChanges(self.run.path, cancelled, poll_s=poll_s, events=events)
        try:
            while not cancelled():
                update = self.poll()
                if update:
                    yield update
                changes.poll_s = poll_s if self.training else ended_poll_s
                changes.wait()
        finally:
            changes.close()

    def poll(self) -> RunUpdate:
        """What changed since the last poll. Never raises: see the module's docstring."""
        now = time.time()
        update = RunUpdate(arrived_at=now, backlog=self._first)
        self._first = False
        self._guarded("metrics.jsonl", self._read_events, update)
        self._guarded("train.log", self._read_log, update)
        self._guarded("status.json", self._read_status, update)
        if not self._guarded("checkpoints", self._read_checkpoints, update):
            self._adapters_sig = None  # not read: look again at the next poll
        # A run that ended changes only with its status file; one that trains, also when its
        # process dies (the lock is let go, nothing is written).
        if update.status is not None or (self.training and now - self._state_checked >= STATE_CHECK_S):
            if self._guarded("state", self._read_state, update):
                self._state_checked = now
        return update

    @property
    def training(self) -> bool:
        """The run trains, or may: its state not read yet, or "interrupted" (a status that says
        running without a process holding the lock is also what a runner shows for a moment
        before it takes the lock)."""
        return self._state not in END_STATES

    def _guarded(self, what: str, read, update: RunUpdate) -> bool:
        try:
            read(update)
        except Exception:
            # Once per spell of failures, not at every look.
            if what not in self._failing:
                self._failing.add(what)
                log.warning("following %s: reading its %s failed; trying again at each look",
                            self.run.path, what, exc_info=True)
            return False
        if what in self._failing:
            self._failing.discard(what)
            log.info("following %s: its %s reads again", self.run.path, what)
        return True

    def _read_events(self, update: RunUpdate) -> None:
        for line in self._metrics.read_lines():
            try:
                update.events.append(Event.from_json(line))
            except ValueError:
                continue  # a line torn by a hard kill

    def _read_log(self, update: RunUpdate) -> None:
        update.log_lines = self._log.read_lines()

    def _read_status(self, update: RunUpdate) -> None:
        status_sig = _signature(self.run.status_json)
        if status_sig != self._status_sig:
            update.status = self.run.read_status()
            self._status_sig = status_sig

    def _read_checkpoints(self, update: RunUpdate) -> None:
        adapters_sig = _signature(self.run.adapters)
        # A new file, a validation that changes the val loss shown beside a checkpoint, or an
        # answer check's finding (written after its checkpoint) that changes its health.
        if adapters_sig != self._adapters_sig or any(isinstance(e, (Val, Health)) for e in update.events):
            update.checkpoints = checkpoint_index(self.run)
            self._adapters_sig = adapters_sig

    def _read_state(self, update: RunUpdate) -> None:
        state = self.run.state()
        if state != self._state:
            if state in ("failed", "interrupted"):
                # Read here, off the UI thread: the cause may be at the end of train.log.
                update.failure = run_failure(self.run)
            self._state = update.state = state
