"""Following a run directory from outside: what it gained since the last look.

Plain Python, no Textual: the app calls ``poll()`` from a thread worker about ten times a second
and posts what it returns. Polling ``stat`` is cheap, works on every filesystem (network mounts
included) and keeps the latency from a line written to the screen near the poll interval.

The run directory changes under the follower: a resume from an earlier checkpoint moves later
files aside, a delete unlinks them, between the follower listing a file and reading it. Whatever
one part of a poll meets is logged and that part tried again at the next poll; the other parts
(the lines already read) still come, and the follower goes on.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tunedeck.core.checkpoints import Checkpoint, checkpoint_index
from tunedeck.core.crash import Failure, run_failure
from tunedeck.core.events import Event, Health, Val
from tunedeck.core.rundir import RunDirectory

# The log can hold hours of output; the screen keeps a capped tail of it anyway.
LOG_HISTORY_BYTES = 256 * 1024
# At most this much is read per poll, so a burst never blocks the worker (or floods the UI).
READ_CHUNK_BYTES = 4 * 1024 * 1024
# How often the lock is checked for a process that died without saying so.
STATE_CHECK_S = 1.0

log = logging.getLogger(__name__)


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

    def __bool__(self) -> bool:
        return bool(self.events or self.log_lines or self.status is not None
                    or self.state is not None or self.checkpoints is not None)


class FileTail:
    """The complete lines appended to a file since the last read (a torn last line waits)."""

    def __init__(self, path: Path, history_bytes: Optional[int] = None):
        self.path = path
        self._history_bytes = history_bytes
        self._offset: Optional[int] = None
        self._partial = b""
        self._skip_first = False  # starting mid-file: the first line read is a fragment

    def read_lines(self) -> list[str]:
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return []
        if self._offset is None:
            self._offset = 0 if self._history_bytes is None else max(0, size - self._history_bytes)
            self._skip_first = self._offset > 0
        if size < self._offset:  # truncated or replaced: start over
            self._offset, self._partial = 0, b""
        if size == self._offset:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(min(size - self._offset, READ_CHUNK_BYTES))
        except FileNotFoundError:
            return []  # gone since the stat: as if it had not been there
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if self._skip_first and lines:
            lines.pop(0)
            self._skip_first = False
        return [line.decode("utf-8", errors="replace") for line in lines]


def _signature(path: Path) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class RunFollower:
    def __init__(self, run: RunDirectory):
        self.run = run
        self._metrics = FileTail(run.metrics_jsonl)
        self._log = FileTail(run.train_log, history_bytes=LOG_HISTORY_BYTES)
        self._status_sig: Optional[tuple] = None
        self._adapters_sig: Optional[tuple] = None
        self._state: Optional[str] = None
        self._state_checked = 0.0
        self._first = True
        self._failing: set[str] = set()  # the parts whose last read failed

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
        if update.status is not None or now - self._state_checked >= STATE_CHECK_S:
            if self._guarded("state", self._read_state, update):
                self._state_checked = now
        return update

    def _guarded(self, what: str, read, update: RunUpdate) -> bool:
        try:
            read(update)
        except Exception:
            # Once per spell of failures, not ten times a second.
            if what not in self._failing:
                self._failing.add(what)
                log.warning("following %s: reading its %s failed; trying again at each poll",
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
