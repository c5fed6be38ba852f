"""Checking JSON Lines, line by line: a byte range of a file (in this process or in a worker
process, scan_worker.py) and one row for the Data pane, with the same rules and messages.

A range's result is plain data (Chunk, and JSON for a worker's pipe), merged into the file's
report in file order by validate.py.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from . import formats as F
from .sources import BOM, json_error_message, utf8_error_message

BOM_WARNING = ("the file starts with a UTF-8 BOM, which mlx_lm.lora rejects (JSONDecodeError: "
               "Unexpected UTF-8 BOM); `tunedeck data convert` writes the data without one")
BLANK_LINE = "blank line: mlx_lm.lora fails on it (its loader parses every line as JSON)"


@dataclass
class Chunk:
    """What one byte range of a file holds: its counts and first problems. Plain data, as it
    crosses a pipe from a worker process (chunk_to_json, chunk_from_json)."""

    lines: int = 0
    rows: int = 0
    valid: int = 0
    errors: int = 0
    warnings: int = 0
    issues: list = field(default_factory=list)   # (line within chunk, is_error, message)
    counts: Counter = field(default_factory=Counter)
    ref_format: Optional[str] = None             # the first record's format, when not given
    ref_line: int = 0

    def issue(self, line: int, error: bool, message: str, keep: int) -> None:
        if error:
            self.errors += 1
        else:
            self.warnings += 1
        if len(self.issues) < keep:
            self.issues.append((line, error, message))


def chunk_to_json(c: Chunk) -> str:
    return json.dumps({"lines": c.lines, "rows": c.rows, "valid": c.valid, "errors": c.errors,
                       "warnings": c.warnings, "issues": c.issues, "counts": c.counts})


def chunk_from_json(text: str) -> Chunk:
    d = json.loads(text)
    return Chunk(lines=d["lines"], rows=d["rows"], valid=d["valid"], errors=d["errors"],
                 warnings=d["warnings"], issues=[tuple(i) for i in d["issues"]],
                 counts=Counter(d["counts"]))


def _mixed_message(fmt: str, ref: str, ref_line: Optional[int] = None,
                   keys: F.FeatureKeys = F.DEFAULT_KEYS) -> str:
    where = f"line {ref_line}" if ref_line else "the first record"
    return (f"{F.describe(fmt, keys)} record in a file of {F.describe(ref, keys)} records "
            f"(format taken from {where}, as mlx-lm does)")


def check_parsed(obj, line: int, c: Chunk, keep: int, ref_line_base: int,
                 keys: F.FeatureKeys) -> None:
    """Check one parsed record; the slow path's counterpart of the loop in _scan_text."""
    c.rows += 1
    fmt = F.record_format(obj, keys)
    if fmt is None:
        c.issue(line, True, F.unknown_record_message(obj), keep)
        return
    c.counts[fmt] += 1
    if c.ref_format is None:
        c.ref_format, c.ref_line = fmt, line + ref_line_base
    bad = False
    if fmt != c.ref_format:
        c.issue(line, True, _mixed_message(fmt, c.ref_format, c.ref_line, keys), keep)
        bad = True
    issues = F.check_record(obj, fmt, keys)
    if issues:
        for is_error, message in issues:
            c.issue(line, is_error, message, keep)
            bad = bad or is_error
    if not bad:
        c.valid += 1


def _slow_line(text: str, line: int, c: Chunk, keep: int, base: int,
               keys: F.FeatureKeys) -> None:
    if not text.strip():
        c.issue(line, True, BLANK_LINE, keep)
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        c.rows += 1
        c.issue(line, True, json_error_message(exc, text), keep)
        return
    except RecursionError:
        c.rows += 1
        c.issue(line, True, "invalid JSON: nested too deeply", keep)
        return
    check_parsed(obj, line, c, keep, base, keys)


_raw_decode = json.JSONDecoder().raw_decode


def _scan_text(s: str, c: Chunk, keep: int, base: int, keys: F.FeatureKeys,
               first_line: int = 1) -> int:
    """Check every line of ``s``; returns the number of the line after the last one.

    The fast path parses in place with raw_decode (no per-line slicing), which is what makes
    one process reach ~120 MB/s; anything unusual drops to _slow_line for an exact message.
    """
    find = s.find
    record_format = F.record_format
    checks = F._CHECKS
    counts = c.counts
    pos, n, line = 0, len(s), first_line
    while pos < n:
        nl = find("\n", pos)
        if nl < 0:
            nl = n
        try:
            obj, end = _raw_decode(s, pos)
        except (ValueError, RecursionError):
            _slow_line(s[pos:nl], line, c, keep, base, keys)
        else:
            if end > nl or (end < nl and not s[end:nl].isspace()):
                # The value runs over the line end (a truncated line followed by a
                # continuation) or the line holds more than one value.
                _slow_line(s[pos:nl], line, c, keep, base, keys)
            else:
                fmt = record_format(obj, keys)
                if fmt is not None and fmt == c.ref_format and checks[fmt](obj, keys) is None:
                    c.rows += 1
                    c.valid += 1
                    counts[fmt] += 1
                else:
                    check_parsed(obj, line, c, keep, base, keys)
        pos = nl + 1
        line += 1
    return line


def _scan_bytes(buf: bytes, c: Chunk, keep: int, base: int, keys: F.FeatureKeys) -> int:
    """The chunk has undecodable bytes: go line by line to name each bad line."""
    lines = buf.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the chunk ends with a newline: no line after it
    line = 1
    for raw in lines:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            c.rows += 1
            c.issue(line, True, utf8_error_message(exc, raw), keep)
        else:
            _slow_line(text, line, c, keep, base, keys)
        line += 1
    return line


def scan_range(path: str, start: int, end: int, ref_format: Optional[str], ref_line: int,
                base_line: int, keep: int, keys: F.FeatureKeys = F.DEFAULT_KEYS) -> Chunk:
    """Check bytes [start, end) of a JSONL file; ``end`` falls just after a newline or at EOF.

    ``base_line`` is the number of lines before ``start`` when known (-1 otherwise); it only
    matters for naming the reference line when this chunk sets the format.
    """
    c = Chunk(ref_format=ref_format, ref_line=ref_line)
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = os.pread(fd, end - start, start)
    finally:
        os.close(fd)
    if start == 0 and buf.startswith(BOM):
        buf = buf[len(BOM):]
        c.issue(1, False, BOM_WARNING, keep)
    base = max(base_line, 0)
    try:
        text = buf.decode("utf-8")
    except UnicodeDecodeError:
        next_line = _scan_bytes(buf, c, keep, base, keys)
    else:
        next_line = _scan_text(text, c, keep, base, keys)
    c.lines = next_line - 1
    return c


# ---------------------------------------------------------------------------------------------
# One row, for the Data pane

@dataclass(frozen=True)
class RowCheck:
    record: Any                       # the parsed record; None when the line is not JSON
    format: Optional[str]             # the record's own format (formats.record_format)
    issues: Tuple[Tuple[bool, str], ...] = ()   # (is_error, message)

    @property
    def ok(self) -> bool:
        return not any(is_error for is_error, _ in self.issues)


def check_row(raw: bytes, file_format: Optional[str] = None,
              keys: F.FeatureKeys = F.DEFAULT_KEYS) -> RowCheck:
    """One line, as LineIndex.read_line returns it, checked with the same rules and messages
    as ``data check``. ``file_format`` is the format of the file's first record, if known;
    ``keys`` the project's feature keys."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RowCheck(None, None, ((True, utf8_error_message(exc, raw)),))
    if not text.strip():
        return RowCheck(None, None, ((True, BLANK_LINE),))
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        return RowCheck(None, None, ((True, json_error_message(exc, text)),))
    except RecursionError:
        return RowCheck(None, None, ((True, "invalid JSON: nested too deeply"),))
    fmt = F.record_format(rec, keys)
    if fmt is None:
        return RowCheck(rec, None, ((True, F.unknown_record_message(rec)),))
    issues = []
    if file_format is not None and fmt != file_format:
        issues.append((True, _mixed_message(fmt, file_format, keys=keys)))
    issues += F.check_record(rec, fmt, keys) or []
    return RowCheck(rec, fmt, tuple(issues))
