"""Validation of data files against what ``mlx_lm.lora`` will accept, problem by problem.

Every problem is reported as ``FILE:LINE: message`` and validation always reads on: a bad line
never hides the good rows or the next problem. JSON Lines files are read in chunks; past the
first chunk (which fixes the file's format, as mlx-lm's first record does) the chunks of a big
file are spread over worker processes, because one core parsing JSON in Python does not reach
the throughput budget (about 90 MB per CPU-second; see bench/bench_data.py). Nothing holds the
whole file: each chunk is read, checked and dropped.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import BadInput
from ..progress import Progress
from . import formats as F
from .sources import (BOM, JSON_ARRAY, JSONL, TXT, SourceProblem, iter_json_array,
                      json_error_message, sniff_container, utf8_error_message)

MAX_KEPT_PROBLEMS = 1000
FIRST_CHUNK = 1 << 20        # small, so the file's format is known almost at once
CHUNK = 32 << 20
WORKERS_MIN_BYTES = 64 << 20    # below this, starting worker processes costs more than it saves
SPLIT_NAMES = ("train", "valid", "test")

BOM_WARNING = ("the file starts with a UTF-8 BOM, which mlx_lm.lora rejects (JSONDecodeError: "
               "Unexpected UTF-8 BOM); `tunedeck data convert` writes the data without one")
BLANK_LINE = "blank line: mlx_lm.lora fails on it (its loader parses every line as JSON)"


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str
    error: bool = True

    def __str__(self) -> str:
        kind = "" if self.error else "warning: "
        where = f"{self.path}:{self.line}" if self.line > 0 else self.path
        return f"{where}: {kind}{self.message}"


@dataclass
class FileReport:
    """What a user needs to know about one file, and what the Data pane shows."""

    path: Path
    container: str                  # JSONL, JSON_ARRAY or TXT (sources.py)
    format: Optional[str] = None    # from the first record, as mlx-lm decides
    size: int = 0
    rows: int = 0                   # records read (non-blank lines, or array elements)
    valid_rows: int = 0             # rows without an error
    errors: int = 0
    warnings: int = 0
    problems: List[Problem] = field(default_factory=list)  # the first MAX_KEPT_PROBLEMS
    format_counts: Dict[str, int] = field(default_factory=dict)
    complete: bool = True           # False when validation was cancelled
    keys: F.FeatureKeys = F.DEFAULT_KEYS   # the column names mlx-lm is told to read

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.complete

    @property
    def mlx_ready(self) -> bool:
        """mlx-lm can read this file as a split (train/valid/test.jsonl)."""
        return self.container == JSONL and self.format in F.MLX_FORMATS

    def add(self, line: int, message: str, error: bool = True, always_keep: bool = False) -> None:
        if error:
            self.errors += 1
        else:
            self.warnings += 1
        if always_keep or len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems.append(Problem(str(self.path), line, message, error))


# ---------------------------------------------------------------------------------------------
# One chunk of a JSON Lines file. Runs in worker processes, so it takes and returns plain data.

@dataclass
class _Chunk:
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


def _mixed_message(fmt: str, ref: str, ref_line: Optional[int] = None,
                   keys: F.FeatureKeys = F.DEFAULT_KEYS) -> str:
    where = f"line {ref_line}" if ref_line else "the first record"
    return (f"{F.describe(fmt, keys)} record in a file of {F.describe(ref, keys)} records "
            f"(format taken from {where}, as mlx-lm does)")


def _record(obj, line: int, c: _Chunk, keep: int, ref_line_base: int,
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


def _slow_line(text: str, line: int, c: _Chunk, keep: int, base: int,
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
    _record(obj, line, c, keep, base, keys)


_raw_decode = json.JSONDecoder().raw_decode


def _scan_text(s: str, c: _Chunk, keep: int, base: int, keys: F.FeatureKeys,
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
                    _record(obj, line, c, keep, base, keys)
        pos = nl + 1
        line += 1
    return line


def _scan_bytes(buf: bytes, c: _Chunk, keep: int, base: int, keys: F.FeatureKeys) -> int:
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


def _scan_range(path: str, start: int, end: int, ref_format: Optional[str], ref_line: int,
                base_line: int, keep: int, keys: F.FeatureKeys = F.DEFAULT_KEYS) -> _Chunk:
    """Check bytes [start, end) of a JSONL file; ``end`` falls just after a newline or at EOF.

    ``base_line`` is the number of lines before ``start`` when known (-1 otherwise); it only
    matters for naming the reference line when this chunk sets the format.
    """
    c = _Chunk(ref_format=ref_format, ref_line=ref_line)
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


# ---------------------------------------------------------------------------------------------
# Drivers

def _plan_chunks(path: Path, size: int) -> List[tuple]:
    """Byte ranges ending just after a newline: a small first one, then CHUNK-sized ones."""
    ranges = []
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        start, target = 0, FIRST_CHUNK
        while start < size:
            cut = mm.find(b"\n", min(start + target, size - 1))
            end = size if cut < 0 else cut + 1
            ranges.append((start, end))
            start, target = end, CHUNK
    return ranges


def _merge(report: FileReport, c: _Chunk, base_line: int) -> None:
    report.rows += c.rows
    report.valid_rows += c.valid
    report.errors += c.errors
    report.warnings += c.warnings
    for fmt, n in c.counts.items():
        report.format_counts[fmt] = report.format_counts.get(fmt, 0) + n
    room = MAX_KEPT_PROBLEMS - len(report.problems)
    for line, is_error, message in c.issues[:max(room, 0)]:
        report.problems.append(Problem(str(report.path), base_line + line, message, is_error))


def _validate_jsonl(report: FileReport, progress: Optional[Progress],
                    cancel: Optional[threading.Event], workers: int) -> None:
    keys = report.keys
    path, size = report.path, report.size
    ranges = _plan_chunks(path, size)
    label = f"checking {path.name}"
    ref, ref_line = None, 0
    base = 0
    done = 0
    pending = list(ranges)
    # In order, in this process, until the first record fixes the format.
    while pending and ref is None:
        if cancel is not None and cancel.is_set():
            report.complete = False
            return
        start, end = pending.pop(0)
        c = _scan_range(str(path), start, end, None, 0, base, MAX_KEPT_PROBLEMS, keys)
        _merge(report, c, base)
        ref, ref_line = c.ref_format, c.ref_line
        base += c.lines
        done += end - start
        if progress:
            progress(label, done / size)
    report.format = ref
    if not pending:
        return
    remaining = sum(e - s for s, e in pending)
    if workers > 1 and remaining >= WORKERS_MIN_BYTES:
        _run_workers(report, pending, ref, ref_line, base, done, progress, cancel, workers)
        return
    for start, end in pending:
        if cancel is not None and cancel.is_set():
            report.complete = False
            return
        c = _scan_range(str(path), start, end, ref, ref_line, -1, MAX_KEPT_PROBLEMS, keys)
        _merge(report, c, base)
        base += c.lines
        done += end - start
        if progress:
            progress(label, done / size)


def chunk_to_json(c: _Chunk) -> str:
    return json.dumps({"lines": c.lines, "rows": c.rows, "valid": c.valid, "errors": c.errors,
                       "warnings": c.warnings, "issues": c.issues, "counts": c.counts})


def _chunk_from_json(text: str) -> _Chunk:
    d = json.loads(text)
    return _Chunk(lines=d["lines"], rows=d["rows"], valid=d["valid"], errors=d["errors"],
                  warnings=d["warnings"], issues=[tuple(i) for i in d["issues"]],
                  counts=Counter(d["counts"]))


def _run_workers(report, pending, ref, ref_line, base, done, progress, cancel, workers) -> None:
    """Check the remaining chunks in worker processes, merging their results in file order.

    Plain subprocesses (``python -m tunedeck.core.data.scan_worker``) rather than a
    multiprocessing pool: a pool re-imports the caller's main module in every child, which
    breaks scripts without a ``__main__`` guard, and forking a threaded app can deadlock.
    Each worker takes a contiguous run of chunks and prints one JSON result per chunk.
    """
    import queue
    import subprocess
    import sys

    path, size = report.path, report.size
    label = f"checking {path.name}"
    total = sum(e - s for s, e in pending)
    groups: List[list] = [[] for _ in range(workers)]
    acc = 0
    for rng in pending:
        groups[min(workers - 1, acc * workers // total)].append(rng)
        acc += rng[1] - rng[0]
    groups = [g for g in groups if g]
    # Bytes checked per worker, results merged or not: progress moves as any worker advances,
    # not only the one whose results are merged next.
    checked = [0] * len(groups)
    procs, queues = [], []
    for k, g in enumerate(groups):
        args = [sys.executable, "-m", "tunedeck.core.data.scan_worker", str(path), ref,
                str(ref_line), str(MAX_KEPT_PROBLEMS), json.dumps(report.keys.as_dict())
                ] + [f"{s}:{e}" for s, e in g]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        q: "queue.Queue[Optional[str]]" = queue.Queue()
        # One reader thread per worker drains its pipe, so no worker ever blocks on a full
        # pipe while this thread waits on an earlier one.
        threading.Thread(target=_drain, args=(proc.stdout, q, g, checked, k),
                         daemon=True).start()
        procs.append(proc)
        queues.append(q)
    shown = -1.0

    def report_progress() -> None:
        nonlocal shown
        fraction = (done + sum(checked)) / size
        if progress and fraction > shown:
            shown = fraction
            progress(label, fraction)

    try:
        for k, (g, q) in enumerate(zip(groups, queues)):
            for i, (start, end) in enumerate(g):
                text = _next_result(q, cancel, report_progress)
                if text is _CANCELLED:
                    report.complete = False
                    return
                if text is None:
                    # The worker died (killed, out of memory): check its share here.
                    for s2, e2 in g[i:]:
                        c = _scan_range(str(path), s2, e2, ref, ref_line, -1,
                                        MAX_KEPT_PROBLEMS, report.keys)
                        _merge(report, c, base)
                        base += c.lines
                        checked[k] += e2 - s2
                        report_progress()
                    break
                c = _chunk_from_json(text)
                _merge(report, c, base)
                base += c.lines
                report_progress()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


_CANCELLED = object()


def _drain(stream, q, ranges: list, checked: list, k: int) -> None:
    for (start, end), text in zip(ranges, stream):
        checked[k] += end - start
        q.put(text)
    q.put(None)


def _next_result(q, cancel: Optional[threading.Event], tick):
    import queue

    while True:
        if cancel is not None and cancel.is_set():
            return _CANCELLED
        try:
            # A bounded wait, so that a cancel is noticed and progress redrawn every 0.1 s.
            return q.get(timeout=0.1)
        except queue.Empty:
            tick()


def _validate_json_array(report: FileReport, progress: Optional[Progress]) -> None:
    c = _Chunk()
    if progress:
        progress(f"checking {report.path.name}", None)
    for line, item in iter_json_array(report.path):
        if isinstance(item, SourceProblem):
            c.issue(line, True, item.message, MAX_KEPT_PROBLEMS)
            if item.message.startswith("invalid JSON"):
                c.rows += 1
            continue
        _record(item, line, c, MAX_KEPT_PROBLEMS, 0, report.keys)
    c.issues.sort(key=lambda issue: issue[0])
    _merge(report, c, 0)
    report.format = c.ref_format


def _validate_txt(report: FileReport) -> None:
    with open(report.path, "rb") as f:
        report.rows = sum(1 for raw in f if raw.strip())
    report.valid_rows = report.rows


def validate_file(path, *, progress: Optional[Progress] = None,
                  cancel: Optional[threading.Event] = None,
                  workers: Optional[int] = None,
                  features: Optional[Dict[str, str]] = None) -> FileReport:
    """Validate one data file. Never raises for bad content: every problem is in the report.

    ``workers`` caps the processes used for big JSONL files (default: one per core).
    ``cancel``, when set, stops at the next chunk and returns a report with complete=False.
    ``features`` maps "prompt", "completion", "chat", "text" to the column mlx-lm is told to
    read (its ``*_feature`` options); unnamed ones keep mlx-lm's defaults.
    """
    path = Path(path)
    try:
        keys = F.FeatureKeys.of(features)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    size = path.stat().st_size
    container = sniff_container(path) if size else JSONL
    report = FileReport(path=path, container=container, size=size, keys=keys)
    if size == 0 or not _has_content(path):
        report.add(1, "empty file: no records (mlx_lm.lora fails on an empty split file; "
                      "add records or delete the file)")
        return report
    if container == JSONL:
        _validate_jsonl(report, progress, cancel, workers or os.cpu_count() or 1)
    elif container == JSON_ARRAY:
        _validate_json_array(report, progress)
    else:
        _validate_txt(report)
    if report.complete:
        _add_format_verdict(report)
    report.problems.sort(key=lambda p: p.line)
    return report


def _has_content(path: Path) -> bool:
    """False for a file of only whitespace (and perhaps a BOM)."""
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 16)
            if not block:
                return False
            if block.startswith(BOM):
                block = block[len(BOM):]
            if block.strip():
                return True


def _add_format_verdict(report: FileReport) -> None:
    """The file-level problem: a file mlx-lm cannot read as a split at all."""
    name = report.path
    fix = f"convert it: tunedeck data convert {name} --out DIR"
    first = min((p.line for p in report.problems), default=1)
    if report.container == TXT:
        report.add(1, "plain text is not a format mlx-lm reads; " + fix
                   + " --txt-mode line|paragraph|sentence|chunk", always_keep=True)
    elif report.format is None:
        if report.rows:
            report.add(first, "no record in a known format", always_keep=True)
    elif report.format == F.PREFERENCE:
        report.add(1, "preference data (prompt with chosen/rejected answers) is for DPO-style "
                      "training, which mlx_lm.lora does not do; to fine-tune on the chosen "
                      f"answers: tunedeck data convert {name} --out DIR --keep chosen",
                   always_keep=True)
    elif report.format == F.KTO:
        report.add(1, "KTO data (examples labelled true/false): mlx_lm.lora would train on the "
                      "false (undesirable) ones too; to fine-tune on the true ones: tunedeck "
                      f"data convert {name} --out DIR --keep chosen", always_keep=True)
    elif report.container == JSON_ARRAY:
        report.add(1, f"a JSON array of {F.describe(report.format, report.keys)} records; "
                      "mlx-lm reads JSON "
                      "Lines (one record per line) from train/valid/test.jsonl; " + fix,
                   always_keep=True)
    elif report.format not in F.MLX_FORMATS:
        report.add(1, f"{F.describe(report.format, report.keys)} is not a format mlx-lm reads; " + fix,
                   always_keep=True)


# ---------------------------------------------------------------------------------------------
# Paths as the `data check` command takes them

def expand_paths(paths: Sequence) -> tuple[list[tuple[Path, Optional[str]]], list[Problem]]:
    """Files to check as (path, split name or None), with problems about missing splits.

    A directory is a dataset as mlx-lm reads it: train.jsonl (required), valid.jsonl (needed
    for validation during training) and test.jsonl (needed only for --test).
    Returns [(path, split)], [Problem].
    """
    files: list[tuple[Path, Optional[str]]] = []
    problems: list[Problem] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = [(p / f"{n}.jsonl", n) for n in SPLIT_NAMES if (p / f"{n}.jsonl").is_file()]
            names = {n for _, n in found}
            if "train" not in names:
                problems.append(Problem(str(p), 0, "no train.jsonl: mlx_lm.lora --train needs "
                                                    "DIR/train.jsonl (and valid.jsonl)"))
            elif "valid" not in names:
                problems.append(Problem(str(p), 0, "no valid.jsonl: mlx_lm.lora trains without "
                                                    "validation", error=False))
            files.extend(found)
        elif p.is_file():
            stem = p.stem if p.suffix == ".jsonl" else None
            files.append((p, stem if stem in SPLIT_NAMES else None))
        else:
            raise BadInput(f"{p}: no such file or directory")
    return files, problems
