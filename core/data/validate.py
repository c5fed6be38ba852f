"""Validation of data files against what ``mlx_lm.lora`` will accept, problem by problem.

Every problem is reported as ``FILE:LINE: message`` and validation always reads on: a bad line
never hides the good rows or the next problem. JSON Lines files are read in chunks (checked by
jsonl_check.py); past the first chunk (which fixes the file's format, as mlx-lm's first record
does) the chunks of a big file are spread over worker processes (check_workers.py). Nothing
holds the whole file: each chunk is read, checked and dropped.
"""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import BadInput
from ..progress import Progress
from . import formats as F
from .check_workers import run_workers
from .file_report import MAX_KEPT_PROBLEMS, FileReport, Problem
from .jsonl_check import Chunk, scan_range, check_parsed
from .sources import BOM, JSON_ARRAY, JSONL, TXT, SourceProblem, iter_json_array, sniff_container

FIRST_CHUNK = 1 << 20        # small, so the file's format is known almost at once
CHUNK = 32 << 20
WORKERS_MIN_BYTES = 64 << 20    # below this, starting worker processes costs more than it saves
SPLIT_NAMES = ("train", "valid", "test")


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
        c = scan_range(str(path), start, end, None, 0, base, MAX_KEPT_PROBLEMS, keys)
        report.add_chunk(c, base)
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
        run_workers(report, pending, ref, ref_line, base, done, progress, cancel, workers)
        return
    for start, end in pending:
        if cancel is not None and cancel.is_set():
            report.complete = False
            return
        c = scan_range(str(path), start, end, ref, ref_line, -1, MAX_KEPT_PROBLEMS, keys)
        report.add_chunk(c, base)
        base += c.lines
        done += end - start
        if progress:
            progress(label, done / size)


def _validate_json_array(report: FileReport, progress: Optional[Progress]) -> None:
    c = Chunk()
    if progress:
        progress(f"checking {report.path.name}", None)
    for line, item in iter_json_array(report.path):
        if isinstance(item, SourceProblem):
            c.issue(line, True, item.message, MAX_KEPT_PROBLEMS)
            if item.message.startswith("invalid JSON"):
                c.rows += 1
            continue
        check_parsed(item, line, c, MAX_KEPT_PROBLEMS, 0, report.keys)
    c.issues.sort(key=lambda issue: issue[0])
    report.add_chunk(c, 0)
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
