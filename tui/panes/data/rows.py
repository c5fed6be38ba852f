"""The rows of a data file, read on demand for the Data pane (no widgets here).

A JSON Lines or text file is browsed through a ``LineIndex``: one row per physical line, so row
``n`` is line ``n + 1`` and ``FILE:LINE`` messages point straight at rows, blank and broken lines
included (a bad line never hides the good ones). A JSON array has no line per record: it is
parsed whole (as mlx-lm and the converters must) and each record keeps the line it starts on.
Only what is on screen is read and checked, and never more than a bounded prefix of a line, so a
1 GB file with a 100 MB line still scrolls.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from tunedeck.core.data import formats as F
from tunedeck.core.data.line_index import BOM, LineIndex
from tunedeck.core.data.sources import JSON_ARRAY, TXT, SourceProblem, iter_json_array
from tunedeck.core.data.jsonl_check import check_row

from tunedeck.core.text import visible

# Lines up to this size are parsed for the list; longer ones show a prefix (opening the row
# parses it whole).
LIST_PARSE_BYTES = 256 << 10
PREVIEW_CHARS = 400
# The detail view shows at most this much of a row; a row mlx-lm reads can be far longer.
DETAIL_BYTES = 8 << 20
# Lines read to find the file's format (its first record's, as mlx-lm decides it).
FORMAT_PROBE_LINES = 100

SHORT_FORMATS = {F.COMPLETIONS: "completions", F.CHAT: "chat", F.TEXT: "text",
                 F.ALPACA: "alpaca", F.SHAREGPT: "sharegpt", F.CONVERSATIONS: "convs",
                 F.PREFERENCE: "pref", F.KTO: "kto"}

Issues = tuple  # ((is_error, message), ...)


@dataclass(frozen=True)
class RowSummary:
    """One line of the row list."""

    line: int
    format: str          # short format name, "" when unknown
    issues: Issues
    preview: str         # one line, safe to draw (control characters shown, not obeyed)

    @property
    def error(self) -> Optional[str]:
        return next((m for is_error, m in self.issues if is_error), None)

    @property
    def warning(self) -> Optional[str]:
        return next((m for is_error, m in self.issues if not is_error), None)


@dataclass(frozen=True)
class RowDetail:
    """One row, for the detail views."""

    line: int
    text: str                 # the row as written (decoded; bad bytes shown as escapes)
    record: Any               # the parsed record, None when the row is not a usable record
    format: Optional[str]     # the record's format (formats.record_format)
    issues: Issues
    size: int                 # bytes of the row in the file
    shown_bytes: int          # bytes of it in ``text`` (less than size for a huge row)


def one_line(text: str) -> str:
    """Text for a single list line: line breaks marked, tabs as spaces, controls visible."""
    text = text[:PREVIEW_CHARS].replace("\r\n", "↵").replace("\n", "↵").replace("\t", " ")
    return visible(text)


def preview(record) -> str:
    """The text a person reads first in a record: its turns, or its fields, on one line."""
    if isinstance(record, dict):
        turns = record.get("messages") or record.get("conversations")
        if isinstance(turns, list):
            parts = []
            for turn in turns:
                if isinstance(turn, dict):
                    role = turn.get("role", turn.get("from", "?"))
                    content = turn.get("content", turn.get("value", ""))
                    parts.append(f"{role}: {content}")
            text = "  ".join(parts)
        else:
            text = "  ".join(f"{k}: {v}" for k, v in record.items())
    else:
        text = json.dumps(record, ensure_ascii=False)
    return one_line(text)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


class LineRows:
    """A JSON Lines or plain text file, one row per line, through a background LineIndex."""

    def __init__(self, path: Path, container: str, index: LineIndex,
                 keys: F.FeatureKeys = F.DEFAULT_KEYS):
        self.path = path
        self.container = container
        self.index = index
        self.keys = keys                   # the project's feature keys
        self.file_format: Optional[str] = None
        self._fd = os.open(path, os.O_RDONLY)

    @classmethod
    def open(cls, path: Path, container: str, first_rows: int, wait: float,
             keys: F.FeatureKeys = F.DEFAULT_KEYS) -> "LineRows":
        """Start indexing and wait, at most ``wait`` seconds, for the first screenful of rows
        (or the whole of a small file), which the index has within a millisecond: the scan
        goes on in the background."""
        index = LineIndex(path).start()
        index.wait_for(first_rows, timeout=wait)
        rows = cls(path, container, index, keys)
        if container != TXT:
            rows.file_format = rows._probe_format()
        return rows

    def _probe_format(self) -> Optional[str]:
        for raw in self.index.read_lines(0, min(FORMAT_PROBE_LINES, self.index.known_lines)):
            if len(raw) <= LIST_PARSE_BYTES and raw.strip():
                fmt = check_row(raw, keys=self.keys).format
                if fmt is not None:
                    return fmt
        return None

    # -- state --------------------------------------------------------------------------------
    @property
    def known(self) -> int:
        return self.index.known_lines

    @property
    def done(self) -> bool:
        return self.index.done

    @property
    def complete(self) -> bool:
        return self.index.complete

    @property
    def fraction(self) -> float:
        return self.index.fraction

    def estimated_rows(self) -> int:
        """The final row count, guessed from the share of the file indexed so far."""
        if self.done or self.fraction <= 0:
            return self.known
        return int(self.known / self.fraction)

    def line_of(self, row: int) -> int:
        return row + 1

    def row_at_line(self, line: int) -> Optional[int]:
        """The row showing ``line`` (1-based), if it is indexed yet."""
        return line - 1 if 0 < line <= self.known else None

    def wait_for_line(self, line: int) -> bool:
        """Block until ``line`` is indexed; False when the file has fewer lines."""
        return self.index.wait_for(line - 1)

    # -- reading ------------------------------------------------------------------------------
    def _read(self, row: int, limit: int) -> tuple:
        """(bytes of the row, at most ``limit`` of them; the row's full size)."""
        start, end = self.index.span(row)
        size = end - start
        raw = os.pread(self._fd, min(size, limit), start)
        if row == 0 and raw.startswith(BOM):
            raw, size = raw[len(BOM):], size - len(BOM)
        if len(raw) == size and raw.endswith(b"\r"):
            raw, size = raw[:-1], size - 1
        return raw, size

    def summaries(self, first: int, count: int) -> list:
        count = max(0, min(count, self.known - first))
        return [self._summary(row) for row in range(first, first + count)]

    def _summary(self, row: int) -> RowSummary:
        raw, size = self._read(row, LIST_PARSE_BYTES)
        line = row + 1
        if self.container == TXT:
            return RowSummary(line, "", (), one_line(_decode(raw)))
        if size > len(raw):
            note = f"a {size / (1 << 20):.1f} MB row: open it to check it"
            return RowSummary(line, "", ((False, note),), one_line(_decode(raw)))
        check = check_row(raw, self.file_format, self.keys)
        if check.record is None and check.format is None:
            shown = one_line(_decode(raw))
            return RowSummary(line, "", check.issues, shown)
        return RowSummary(line, SHORT_FORMATS.get(check.format, ""), check.issues,
                          preview(check.record))

    def detail(self, row: int) -> RowDetail:
        raw, size = self._read(row, DETAIL_BYTES)
        line = row + 1
        if self.container == TXT:
            return RowDetail(line, _decode(raw), None, None, (), size, len(raw))
        if size > len(raw):
            note = (f"a {size / (1 << 20):.0f} MB row: only its first "
                    f"{DETAIL_BYTES >> 20} MB are shown, and it is not parsed here")
            return RowDetail(line, _decode(raw), None, None, ((False, note),), size, len(raw))
        check = check_row(raw, self.file_format, self.keys)
        record = check.record if check.format is not None else None
        return RowDetail(line, _decode(raw), record, check.format, check.issues, size, len(raw))

    def cancel(self) -> None:
        self.index.cancel()

    def close(self) -> None:
        self.index.close()
        os.close(self._fd)


class ArrayRows:
    """A JSON array file: its records (and the problems found reading it), by starting line."""

    container = JSON_ARRAY
    done = complete = True
    fraction = 1.0

    def __init__(self, path: Path, items: Sequence[tuple], keys: F.FeatureKeys = F.DEFAULT_KEYS):
        self.path = path
        self.keys = keys
        # Problems with the encoding are reported first by the reader: put them in line order.
        self.items = sorted(items, key=lambda item: item[0])
        self.lines = [line for line, _ in self.items]
        self.file_format = next((F.record_format(item, keys) for _, item in self.items
                                 if not isinstance(item, SourceProblem)
                                 and F.record_format(item, keys) is not None), None)

    @classmethod
    def open(cls, path: Path, keys: F.FeatureKeys = F.DEFAULT_KEYS) -> "ArrayRows":
        return cls(path, list(iter_json_array(path)), keys)

    @property
    def known(self) -> int:
        return len(self.items)

    def estimated_rows(self) -> int:
        return len(self.items)

    def line_of(self, row: int) -> int:
        return self.lines[row]

    def row_at_line(self, line: int) -> Optional[int]:
        """The record that ``line`` falls in (the last one starting at or before it)."""
        if not self.items:
            return None
        return max(0, bisect.bisect_right(self.lines, line) - 1)

    def wait_for_line(self, line: int) -> bool:
        return bool(self.items)

    def summaries(self, first: int, count: int) -> list:
        return [self._summary(row) for row in range(first, min(first + count, self.known))]

    def _summary(self, row: int) -> RowSummary:
        line, item = self.items[row]
        if isinstance(item, SourceProblem):
            return RowSummary(line, "", ((True, item.message),), "")
        check = self._check(item)
        return RowSummary(line, SHORT_FORMATS.get(check.format, ""), check.issues, preview(item))

    def detail(self, row: int) -> RowDetail:
        line, item = self.items[row]
        if isinstance(item, SourceProblem):
            return RowDetail(line, "", None, None, ((True, item.message),), 0, 0)
        check = self._check(item)
        text = json.dumps(item, ensure_ascii=False)
        record = item if check.format is not None else None
        size = len(text.encode())
        return RowDetail(line, text, record, check.format, check.issues, size, size)

    def _check(self, item):
        # The same rules and messages as a JSONL row: an element is checked as its own line.
        return check_row(json.dumps(item, ensure_ascii=False).encode(), self.file_format,
                         self.keys)

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass
