"""Following an mlx-lm log that tunedeck did not write: a log file, or a pipe on stdin.

The log is turned into events by core's parser, so the Training pane shows the same plot,
status line and ETA as for a run directory. Plain Python, no Textual; run in a thread worker.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path
from typing import Callable, Iterator

from tunedeck.core.logparse import LogParser

from .run_follower import FileTail, RunUpdate

PIPE_READ_BYTES = 1 << 16


def follow_log_file(path: Path, poll_s: float, cancelled: Callable[[], bool]) -> Iterator[RunUpdate]:
    parser = LogParser()
    tail = FileTail(path)
    first = True
    while not cancelled():
        lines = tail.read_lines()
        if lines or first:
            events = parser.feed("\n".join(lines) + "\n") if lines else []
            yield RunUpdate(events=events, log_lines=lines, arrived_at=time.time(), backlog=first,
                            state="following" if first else None)
            first = False
        time.sleep(poll_s)


def follow_pipe(fd: int, poll_s: float, cancelled: Callable[[], bool]) -> Iterator[RunUpdate]:
    """Lines as they come down the pipe; the state becomes "ended" when the writer closes it."""
    parser = LogParser()
    partial = b""
    yield RunUpdate(arrived_at=time.time(), state="following")
    while not cancelled():
        ready, _, _ = select.select([fd], [], [], poll_s)
        if not ready:
            continue
        data = os.read(fd, PIPE_READ_BYTES)
        if not data:
            events = parser.close()
            yield RunUpdate(events=events, log_lines=[partial.decode("utf-8", "replace")] if partial else [],
                            arrived_at=time.time(), state="ended")
            return
        events = parser.feed(data)
        lines = (partial + data).split(b"\n")
        partial = lines.pop()
        yield RunUpdate(events=events, log_lines=[line.decode("utf-8", "replace") for line in lines],
                        arrived_at=time.time())
