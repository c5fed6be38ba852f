"""Following an mlx-lm log that tunedeck did not write: a log file, or a pipe on stdin.

The log is turned into events by core's parser, so the Training pane shows the same plot,
status line and ETA as for a run directory, and the health monitor reads along (core.health's
LogHealth), so its findings show too. Plain Python, no Textual; run in a thread worker.
"""

from __future__ import annotations

import logging
import os
import select
import time
from pathlib import Path
from typing import Callable, Iterator

from .health import LogHealth
from .logparse import LogParser

from .file_tail import FileTail
from .run_follower import READ_CHUNK_BYTES, FileChanges, RunUpdate

PIPE_READ_BYTES = 1 << 16
# The parser holds a traceback's last line until the next line shows no chained exception
# follows; a log quiet for this long has said all it will (a crashed run writes no more).
QUIET_S = 1.0

log = logging.getLogger(__name__)


def follow_log_file(path: Path, cancelled: Callable[[], bool]) -> Iterator[RunUpdate]:
    parser, health = LogParser(), LogHealth()
    tail = FileTail(path, chunk_bytes=READ_CHUNK_BYTES)
    # Woken by a change in the file's directory, or after QUIET_S at the latest: the parser's
    # flush of a quiet log's last lines waits for no event.
    changes = FileChanges(path.parent, cancelled, poll_s=QUIET_S, recursive=False)
    try:
        yield from _follow_log_lines(path, tail, parser, health, changes, cancelled)
    finally:
        changes.close()


def _follow_log_lines(path, tail, parser, health, changes, cancelled) -> Iterator[RunUpdate]:
    first, quiet_since, idled, failing = True, time.monotonic(), False, False
    while not cancelled():
        try:
            lines = tail.read_lines()
        except OSError:
            # Unreadable for now (permissions changed, a network mount away): say so once, and
            # keep trying, as for a file that is not there yet.
            if not failing:
                log.warning("following %s: reading it failed; trying again at each poll", path,
                            exc_info=True)
            lines, failing = [], True
        else:
            failing = False
        events = []
        if lines:
            health.read_lines(lines)
            events = parser.feed("\n".join(lines) + "\n")
            quiet_since, idled = time.monotonic(), False
        elif not idled and time.monotonic() - quiet_since >= QUIET_S:
            events, idled = parser.idle(), True
        events = health.observe(events)
        if lines or events or first:
            yield RunUpdate(events=events, log_lines=lines, arrived_at=time.time(), backlog=first,
                            state="following" if first else None)
            first = False
        changes.wait()


def follow_pipe(fd: int, poll_s: float, cancelled: Callable[[], bool]) -> Iterator[RunUpdate]:
    """Lines as they come down the pipe; the state becomes "ended" when the writer closes it."""
    parser, health = LogParser(), LogHealth()
    partial = b""
    yield RunUpdate(arrived_at=time.time(), state="following")
    while not cancelled():
        ready, _, _ = select.select([fd], [], [], poll_s)
        if not ready:
            continue
        data = os.read(fd, PIPE_READ_BYTES)
        if not data:
            events = health.observe(parser.close())
            yield RunUpdate(events=events, log_lines=[partial.decode("utf-8", "replace")] if partial else [],
                            arrived_at=time.time(), state="ended")
            return
        lines = (partial + data).split(b"\n")
        partial = lines.pop()
        text_lines = [line.decode("utf-8", "replace") for line in lines]
        health.read_lines(text_lines)
        events = health.observe(parser.feed(data))
        yield RunUpdate(events=events, log_lines=text_lines, arrived_at=time.time())
