"""``data convert``: the usual dataset formats into mlx-lm's train/valid/test.jsonl.

Each input record is checked, put in its neutral shape and written in the target format
(record_shapes.py; a .txt file is split into rows by plain_text.py); then the rows are
shuffled, split and written, each split file atomically.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import BadInput
from ..progress import Progress
from ..rundir import atomic_path
from . import formats as F
from .file_report import Problem
from .plain_text import read_txt, split_text
from .record_shapes import Example, feedback_message, render, to_example
from .sources import (DATA_SUFFIXES, JSON_ARRAY, JSONL, TXT, SourceProblem, iter_records,
                      sniff_container)
from .validate import SPLIT_NAMES

TARGETS = (F.CHAT, F.COMPLETIONS, F.TEXT)
DEFAULT_SPLIT = (80.0, 10.0, 10.0)
MLX_DEFAULT_BATCH_SIZE = 4  # mlx_lm.lora refuses a split with fewer rows than the batch size
KEEP_CHOICES = ("chosen",)


class InvalidData(BadInput):
    """Input records that cannot be converted; ``problems`` has every one of them."""

    def __init__(self, problems: List[Problem], bad_rows: int):
        self.problems = problems
        super().__init__(f"{bad_rows} invalid record(s) in the input; fix them, or pass "
                         "--skip-invalid to leave them out")


class ConversionCancelled(Exception):
    """The conversion was cancelled before anything was written."""


@dataclass
class ConvertResult:
    out_dir: Path
    target: str
    counts: Dict[str, int]                       # rows per split file written
    files: List[Path]
    rows_read: int = 0
    duplicates: int = 0
    skipped: int = 0                             # invalid rows left out (--skip-invalid)
    rejected: int = 0                            # KTO rows labelled false, left out (--keep)
    warnings: List[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Splitting and writing

def parse_split(spec: str) -> Tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in spec.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 100) > 1e-6:
        raise BadInput(f"--split {spec}: give three percentages for train,valid,test that add "
                       "up to 100, e.g. 80,10,10")
    if parts[0] == 0:
        raise BadInput(f"--split {spec}: the train share cannot be 0")
    return parts


def split_sizes(n: int, split: Sequence[float]) -> Tuple[int, int, int]:
    """Rows for train, valid and test. A split with a share gets at least one row when there
    are rows to spare, so asking for validation never silently yields none."""
    valid = round(n * split[1] / 100)
    test = round(n * split[2] / 100)
    if split[1] > 0 and valid == 0 and n - test >= 2:
        valid = 1
    if split[2] > 0 and test == 0 and n - valid >= 2:
        test = 1
    return n - valid - test, valid, test


def _write_jsonl(path: Path, lines: Sequence[str]) -> None:
    """Atomically: a crash or a full disk never leaves a half-written split file under the
    real name."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line)
                f.write("\n")


def expand_inputs(inputs: Sequence) -> List[Path]:
    files = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(x for x in p.iterdir()
                           if x.is_file() and x.suffix.lower() in DATA_SUFFIXES)
            if not found:
                raise BadInput(f"{p}: no .jsonl, .json or .txt files in this directory")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise BadInput(f"{p}: no such file or directory")
    return files


def _check_output(out_dir: Path, inputs: Sequence[Path], force: bool) -> None:
    targets = {(out_dir / f"{n}.jsonl").resolve() for n in SPLIT_NAMES}
    for p in inputs:
        if p.resolve() in targets:
            raise BadInput(f"{p}: is an input and would be overwritten by the output; "
                           "choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise BadInput(f"{out_dir}: not empty; pass --force to write train/valid/test.jsonl "
                       "into it (other files are left alone)")


# ---------------------------------------------------------------------------------------------
# The whole conversion

def _usable(item) -> Optional[str]:
    """The record's format when it is a record without errors, else None."""
    if isinstance(item, SourceProblem):
        return None
    fmt = F.record_format(item)
    if fmt is None:
        return None
    issues = F.check_record(item, fmt)
    return None if issues and any(is_error for is_error, _ in issues) else fmt


def first_kind(path: Path, keep: Optional[str] = None) -> Optional[str]:
    """The neutral shape of a file's first usable record ("chat", "completions", "text")."""
    container = sniff_container(path)
    if container == TXT:
        return "text"
    for _, item in iter_records(path, container):
        fmt = _usable(item)
        if fmt in F.FEEDBACK_FORMATS and keep is None:
            # Said once for the file, rather than as a problem on every line.
            raise BadInput(f"{path}: {feedback_message(fmt)}")
        if fmt is not None and isinstance(item, dict):  # a record's format: a dict
            try:
                example = to_example(item, fmt, keep)
            except (ValueError, TypeError):
                continue
            if example is not None:
                return example[0]
    return None


def choose_target(kinds: set) -> str:
    """The target when --to is not given: the shape that holds the data without flattening."""
    if kinds <= {"text"}:
        return F.TEXT
    if kinds <= {"completions"}:
        return F.COMPLETIONS
    if "text" in kinds:
        raise BadInput("the input mixes plain text with conversations; choose --to text "
                       "(conversations are written out with their roles) or convert them apart")
    return F.CHAT


class _Rows:
    """Output rows as compact JSON lines (a third of the memory of parsed records), with the
    problems of the rows that could not be converted."""

    def __init__(self, target: str, dedup: bool):
        self.target = target
        self.lines: List[str] = []
        self.problems: List[Problem] = []
        self.bad = 0
        self.read = 0            # records and text rows seen, good or bad
        self.duplicates = 0
        self.rejected = 0        # left out by --keep
        # Digests rather than the lines: the set stays small even for millions of rows, and
        # 128 bits make a false "duplicate" (a lost row) practically impossible.
        self._seen: Optional[set[bytes]] = set() if dedup else None

    def reject(self, path: Path, line: int, messages: Sequence[str]) -> None:
        self.bad += 1
        for message in messages:
            if len(self.problems) < 1000:
                self.problems.append(Problem(str(path), line, message))

    def add(self, path: Path, line: int, example: Example) -> None:
        try:
            text = json.dumps(render(example, self.target), ensure_ascii=False)
        except ValueError as exc:
            self.reject(path, line, [f"cannot write as {self.target}: {exc}"])
            return
        if self._seen is not None:
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
            if digest in self._seen:
                self.duplicates += 1
                return
            self._seen.add(digest)
        self.lines.append(text)


def _read_into(rows: _Rows, path: Path, *, txt_mode: str, tokenizer, chunk_tokens: int,
               overlap: int, progress: Optional[Progress],
               cancel: Optional[threading.Event], keep: Optional[str] = None) -> None:
    container = sniff_container(path)
    if container == TXT:
        if progress:
            progress(f"reading {path.name}", None)
        for text in split_text(read_txt(path), txt_mode, tokenizer, chunk_tokens, overlap):
            rows.read += 1
            rows.add(path, 0, ("text", text))
        return
    records = 0
    for line, item in iter_records(path, container, progress, f"reading {path.name}"):
        records += 1
        if cancel is not None and records % 1000 == 0 and cancel.is_set():
            raise ConversionCancelled(f"converting {path.name} was cancelled")
        if isinstance(item, SourceProblem):
            # A bad JSONL line is a row; a JSON array's syntax problem (a trailing comma, a
            # missing ']') is not.
            rows.read += container == JSONL
            rows.reject(path, line, [item.message])
            continue
        rows.read += 1
        fmt = F.record_format(item)
        if fmt is None:
            rows.reject(path, line, [F.unknown_record_message(item)])
            continue
        issues = F.check_record(item, fmt)
        if issues and any(is_error for is_error, _ in issues):
            rows.reject(path, line, [message for is_error, message in issues if is_error])
            continue
        try:
            example = to_example(item, fmt, keep)
        except (ValueError, TypeError) as exc:
            rows.reject(path, line, [f"cannot convert: {exc}"])
            continue
        if example is None:
            rows.rejected += 1
            continue
        rows.add(path, line, example)
    if container == JSON_ARRAY and not records:
        rows.reject(path, 1, ["empty array: no records"])


def convert(inputs: Sequence, out_dir, *, to: Optional[str] = None,
            split: Sequence[float] = DEFAULT_SPLIT, seed: int = 0, shuffle: bool = True,
            txt_mode: str = "line", chunk_tokens: int = 512, overlap: int = 0, tokenizer=None,
            dedup: bool = False, force: bool = False, skip_invalid: bool = False,
            keep: Optional[str] = None, progress: Optional[Progress] = None,
            cancel: Optional[threading.Event] = None) -> ConvertResult:
    """Convert INPUT files into ``out_dir``/train.jsonl, valid.jsonl, test.jsonl.

    An input is never overwritten; a non-empty ``out_dir`` needs ``force``. Empty splits are
    not written: mlx_lm.lora stops with an IndexError on an empty valid.jsonl, while a missing
    one only means "no validation" (and a missing test.jsonl only matters for --test).
    Without ``to``, the target follows the first usable record of each input.
    ``keep="chosen"`` turns preference data into supervised data (the chosen answers) and keeps
    the KTO examples labelled true.
    Raises InvalidData (with every problem) when records cannot be converted and
    ``skip_invalid`` is off, and ConversionCancelled when ``cancel`` is set while reading;
    nothing is written then.
    """
    if to is not None and to not in TARGETS:
        raise BadInput(f"--to {to}: choose chat, completions or text")
    if keep is not None and keep not in KEEP_CHOICES:
        raise BadInput(f"--keep {keep}: choose {', '.join(KEEP_CHOICES)}")
    out_dir = Path(out_dir)
    files = expand_inputs(inputs)
    _check_output(out_dir, files, force)
    if to in (F.CHAT, F.COMPLETIONS):
        for path in files:
            if sniff_container(path) == TXT:
                raise BadInput(f"{path}: plain text has no prompts or answers, so it can only "
                               "become text rows (--to text)")
    target = to or choose_target({k for k in (first_kind(p, keep) for p in files)
                                  if k is not None})

    rows = _Rows(target, dedup)
    for path in files:
        _read_into(rows, path, txt_mode=txt_mode, tokenizer=tokenizer,
                   chunk_tokens=chunk_tokens, overlap=overlap, progress=progress, cancel=cancel,
                   keep=keep)
    if rows.bad and not skip_invalid:
        raise InvalidData(rows.problems, rows.bad)
    if cancel is not None and cancel.is_set():
        raise ConversionCancelled("the conversion was cancelled")
    lines = rows.lines
    if not lines:
        raise BadInput("no rows to write: the input has no usable records")
    if shuffle:
        random.Random(seed).shuffle(lines)
    n_train, n_valid, n_test = split_sizes(len(lines), split)
    if n_train < 1:
        raise BadInput(f"{len(lines)} row(s) are too few for --split "
                       f"{','.join(f'{p:g}' for p in split)}")
    parts = {"train": lines[:n_train], "valid": lines[n_train:n_train + n_valid],
             "test": lines[n_train + n_valid:]}

    result = ConvertResult(out_dir=out_dir, target=target, counts={}, files=[],
                           rows_read=rows.read,
                           duplicates=rows.duplicates, skipped=rows.bad,
                           rejected=rows.rejected)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        path = out_dir / f"{name}.jsonl"
        if part:
            if progress:
                progress(f"writing {path.name}", None)
            _write_jsonl(path, part)
            result.files.append(path)
            result.counts[name] = len(part)
            if name != "test" and len(part) < MLX_DEFAULT_BATCH_SIZE:
                result.warnings.append(
                    f"{path}: {len(part)} row(s); mlx_lm.lora needs at least --batch-size rows "
                    f"(default {MLX_DEFAULT_BATCH_SIZE}) in it")
        elif path.exists():
            # Left over from an earlier conversion (--force): it would mix old rows in.
            path.unlink()
    if "valid" not in result.counts:
        result.warnings.append("no valid.jsonl: mlx_lm.lora will train without validation")
    return result
