"""A byte-offset index of the lines of a big file, built in the background.

The Data pane shows the first rows of a 1 GB JSONL at once and jumps to any row: it needs where
each line starts, not the lines. The index keeps only offsets (one uint64 per line, in a numpy
array), found by scanning a read-only mmap in chunks on a background thread; a line is read with
``os.pread`` as soon as its end is known, while the scan goes on. Nothing here turns the file
into Python objects.
"""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from ..progress import Progress

BOM = b"\xef\xbb\xbf"
FIRST_CHUNK = 256 << 10   # small, so the first screen of rows is ready in about a millisecond
CHUNK = 16 << 20


class IndexCancelled(Exception):
    """The index was cancelled before reaching the line asked for."""


class LineIndex:
    """Offsets of the lines of ``path``. Use ``start()`` (background) or ``build()`` (here).

    Line numbers are 0-based here; ``FILE:LINE`` messages add one. A line's bytes exclude its
    ``\\n`` and a trailing ``\\r``; the first line's BOM is dropped.
    """

    def __init__(self, path, progress: Optional[Progress] = None, chunk_size: int = CHUNK):
        self.path = Path(path)
        self._progress = progress
        self._chunk = chunk_size
        self._fd = os.open(self.path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        # _ends[i] is the offset of the newline ending line i (or the file size for a last line
        # without one). Only _ends[:_count] is valid; the array is replaced when it grows.
        self._ends = np.empty(1024, dtype=np.uint64)
        self._count = 0
        self._scanned = 0
        self._done = False
        self._error: Optional[BaseException] = None
        self._cancel = threading.Event()
        self._changed = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    # -- building ---------------------------------------------------------------------------

    def start(self) -> "LineIndex":
        """Build the index on a daemon thread; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"index {self.path.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def build(self) -> "LineIndex":
        """Build the index in the calling thread."""
        self._run()
        if self._error is not None:
            raise self._error
        return self

    def cancel(self) -> None:
        """Stop the scan at the next chunk; lines indexed so far stay readable."""
        self._cancel.set()

    def _run(self) -> None:
        try:
            if self.size:
                self._scan()
        except BaseException as exc:  # reported to whoever waits, not lost on the thread
            self._error = exc
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def _scan(self) -> None:
        with mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) as mm:
            pos, step = 0, FIRST_CHUNK
            while pos < self.size:
                if self._cancel.is_set():
                    return
                end = min(pos + step, self.size)
                view = np.frombuffer(mm, dtype=np.uint8, count=end - pos, offset=pos)
                found = np.flatnonzero(view == 10).astype(np.uint64)
                # The view must go before the mmap closes (it holds the buffer).
                del view
                found += pos
                if end == self.size and (found.size == 0 or int(found[-1]) != self.size - 1):
                    # A last line without a newline ends at the end of the file.
                    found = np.append(found, np.uint64(self.size))
                self._append(found, end)
                if self._progress is not None:
                    self._progress(f"indexing {self.path.name}", end / self.size)
                pos, step = end, self._chunk

    def _append(self, found: np.ndarray, scanned: int) -> None:
        n = self._count + found.size
        ends = self._ends
        if n > ends.size:
            bigger = np.empty(max(n, 2 * ends.size), dtype=np.uint64)
            bigger[:self._count] = ends[:self._count]
            ends = bigger
        ends[self._count:n] = found
        with self._changed:
            # Publish the array before the count: a reader that sees the new count also
            # sees an array holding those entries.
            self._ends = ends
            self._count = n
            self._scanned = scanned
            self._changed.notify_all()

    # -- state ------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The scan has stopped: finished, cancelled or failed."""
        return self._done

    @property
    def complete(self) -> bool:
        """Every line of the file is indexed."""
        return self._done and self._scanned >= self.size

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set() and not self.complete

    @property
    def known_lines(self) -> int:
        """Lines that can be read now."""
        return self._count

    @property
    def fraction(self) -> float:
        return 1.0 if not self.size else self._scanned / self.size

    def __len__(self) -> int:
        """The number of lines; only final once ``complete``."""
        return self._count

    def wait_for(self, line: int, timeout: Optional[float] = None) -> bool:
        """Wait until ``line`` is readable; False if the file has fewer lines or on timeout.

        Raises IndexCancelled when the scan was cancelled before reaching it.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._count > line or self._done, timeout)
        if self._count > line:
            return True
        if self._error is not None:
            raise self._error
        if self._done and self._cancel.is_set() and self._scanned < self.size:
            raise IndexCancelled(f"indexing {self.path.name} was cancelled")
        return False

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the scan stops; True if it did within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._done, timeout)

    # -- reading ----------------------------------------------------------------------------

    def span(self, line: int) -> tuple:
        """(start, end) byte offsets of a readable line, without its line ending."""
        count, ends = self._count, self._ends
        if not 0 <= line < count:
            raise IndexError(f"line {line + 1} is not indexed (known lines: {count})")
        start = 0 if line == 0 else int(ends[line - 1]) + 1
        end = int(ends[line])
        return start, end

    def read_line(self, line: int) -> bytes:
        """The bytes of a readable line (0-based), without its line ending."""
        start, end = self.span(line)
        data = os.pread(self._fd, end - start, start)
        if line == 0 and data.startswith(BOM):
            data = data[len(BOM):]
        if data.endswith(b"\r"):
            data = data[:-1]
        return data

    def read_lines(self, first: int, count: int) -> list:
        """Up to ``count`` readable lines from ``first``, in one read."""
        last = min(first + count, self._count) - 1
        if last < first:
            return []
        start, _ = self.span(first)
        _, end = self.span(last)
        block = os.pread(self._fd, end - start, start)
        lines = block.split(b"\n")
        if first == 0 and lines[0].startswith(BOM):
            lines[0] = lines[0][len(BOM):]
        return [x[:-1] if x.endswith(b"\r") else x for x in lines]

    def close(self) -> None:
        self.cancel()
        if self._thread is not None:
            self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "LineIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
