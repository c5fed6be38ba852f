"""Following a run directory from outside: what it gained since the last look.

Plain Python, no Textual: the app calls ``poll()`` from a thread worker about ten times a second
and posts what it returns. Polling ``stat`` is cheap, works on every filesystem (network mounts
included) and keeps the latency from a line written to the screen near the poll interval.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tunedeck.core.checkpoints import Checkpoint, checkpoint_index
from tunedeck.core.events import Event, Val
from tunedeck.core.rundir import RunDirectory

# The log can hold hours of output; the screen keeps a capped tail of it anyway.
LOG_HISTORY_BYTES = 256 * 1024
# At most this much is read per poll, so a burst never blocks the worker (or floods the UI).
READ_CHUNK_BYTES = 4 * 1024 * 1024
# How often the lock is checked for a process that died without saying so.
STATE_CHECK_S = 1.0


@dataclass
class RunUpdate:
    events: list[Event] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    status: Optional[dict] = None        # set when status.json changed
    state: Optional[str] = None          # set when the state a user sees changed
    checkpoints: Optional[list[Checkpoint]] = None  # set when the index may have changed
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
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(min(size - self._offset, READ_CHUNK_BYTES))
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

    def poll(self) -> RunUpdate:
        now = time.time()
        update = RunUpdate(arrived_at=now, backlog=self._first)
        self._first = False
        for line in self._metrics.read_lines():
            try:
                update.events.append(Event.from_json(line))
            except ValueError:
                continue  # a line torn by a hard kill
        update.log_lines = self._log.read_lines()
        status_sig = _signature(self.run.status_json)
        if status_sig != self._status_sig:
            self._status_sig = status_sig
            update.status = self.run.read_status()
        adapters_sig = _signature(self.run.adapters)
        # A new file, or a validation that changes the val loss shown beside a checkpoint.
        if adapters_sig != self._adapters_sig or any(isinstance(e, Val) for e in update.events):
            self._adapters_sig = adapters_sig
            update.checkpoints = checkpoint_index(self.run)
        if update.status is not None or now - self._state_checked >= STATE_CHECK_S:
            self._state_checked = now
            state = self.run.state()
            if state != self._state:
                self._state = update.state = state
        return update
