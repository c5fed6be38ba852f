"""Reading a file another process is still appending to: the one tail of tunedeck.

The run follower reads a run's metrics.jsonl and train.log with it, ``tunedeck watch LOG`` a plain
mlx-lm log, ``tunedeck metrics`` and ``tunedeck train``'s status line a metrics.jsonl, and
``tunedeck train`` copies the log to the terminal. All of them meet the same file changes: a line
half written (it waits for its newline), a file truncated or replaced by another one (a resume
from an earlier checkpoint, a log rotated or written again by hand: read from its start again),
and a file not there yet or gone (nothing to read, no error).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union


def read_appended(path: Union[str, os.PathLike], offset: int, limit: Optional[int] = None) -> tuple[bytes, int]:
    """What ``path`` holds from ``offset`` on (at most ``limit`` bytes), and where that ends.

    A file now shorter than ``offset`` was truncated or replaced: it is read from its start.
    A missing file reads as nothing.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:
                offset = 0
            f.seek(offset)
            data = f.read(-1 if limit is None else min(size - offset, limit))
    except (FileNotFoundError, NotADirectoryError):
        return b"", offset
    return data, offset + len(data)


class FileTail:
    """The complete lines appended to a file since the last read (a torn last line waits).

    ``history_bytes`` starts that far from the end of what is already there (the first line read
    then is a fragment, and is dropped); ``chunk_bytes`` caps one read, so a backlog never blocks
    its reader for long (the rest comes at the next read). A file replaced by another (a new
    inode), or truncated, is read again from its start.
    """

    def __init__(self, path: Union[str, os.PathLike], history_bytes: Optional[int] = None,
                 chunk_bytes: Optional[int] = None):
        self.path = Path(path)
        self._history_bytes = history_bytes
        self._chunk_bytes = chunk_bytes
        self._offset: Optional[int] = None
        self._identity: Optional[tuple[int, int]] = None  # (device, inode) of the file being read
        self._partial = b""
        self._skip_first = False  # starting mid-file: the first line read is a fragment

    def read_lines(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        identity = (st.st_dev, st.st_ino)
        if self._offset is None:
            self._offset = 0 if self._history_bytes is None else max(0, st.st_size - self._history_bytes)
            self._skip_first = self._offset > 0
        elif identity != self._identity or st.st_size < self._offset:  # replaced or truncated
            self._offset, self._partial, self._skip_first = 0, b"", False
        self._identity = identity
        if st.st_size == self._offset:
            return []
        data, end = read_appended(self.path, self._offset, self._chunk_bytes)
        if end < self._offset:  # truncated between the stat and the read
            self._partial, self._skip_first = b"", False
        self._offset = end
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if self._skip_first and lines:
            lines.pop(0)
            self._skip_first = False
        return [line.decode("utf-8", errors="replace") for line in lines]

    def held_back(self) -> bytes:
        """The last line read so far that has no newline yet: a writer may still be writing it,
        so read_lines keeps it; a reader that is done with the file (a writer killed mid-line
        leaves one) takes it as the file's last line."""
        return b"" if self._skip_first else self._partial
