"""Generated rows on disk, built to survive a hard kill: every row is one complete JSON line,
appended and fsynced per batch, and a line a kill cut short is repaired by the next run. The
output is one file, or train/valid/test.jsonl in a directory, with a sidecar of quality flags.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import BadInput
from .prompts import prompt_key
from .validate import SPLIT_NAMES


def repair_tail(path: Path) -> int:
    """Cut a last line a hard kill left unfinished; returns the number of complete lines."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return data.count(b"\n", 0, end)


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Complete lines in one write, then fsync: a crash keeps whole lines or nothing new
    (a cut last line is repaired by the next run)."""
    if not lines:
        return
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def split_names(count: int, split: Sequence[float]) -> List[str]:
    """The split of each of ``count`` prompts, in input order: each goes to the split furthest
    behind its share, so the proportions hold at every length and a re-run assigns alike."""
    names, given = [], [0, 0, 0]
    for i in range(count):
        behind = [(i + 1) * share / 100 - given[k] for k, share in enumerate(split)]
        k = max(range(3), key=lambda j: (behind[j], -j))
        given[k] += 1
        names.append(SPLIT_NAMES[k])
    return names


class AnswerOutput:
    """Where answers go, what is there already, and the flags sidecar."""

    def __init__(self, out: Path, split: Optional[Sequence[float]]):
        out = Path(out)
        self.is_dir = out.is_dir() or out.suffix.lower() not in (".jsonl", ".json")
        if not self.is_dir and split is not None:
            raise BadInput(f"--split writes train/valid/test.jsonl: give a directory as --out, "
                           f"not {out}")
        self.out = out
        self.split = tuple(split) if split is not None else None
        folder = out if self.is_dir else out.parent
        self.flags_path = folder / (".generate.flags" if self.is_dir else f".{out.name}.flags")
        self.done: set = set()
        self.lines: Dict[Path, int] = {}

    def file_for(self, split_name: str) -> Path:
        return self.out / f"{split_name}.jsonl" if self.is_dir else self.out

    @property
    def files(self) -> List[Path]:
        if not self.is_dir:
            return [self.out]
        return [self.file_for(n) for n in SPLIT_NAMES]

    def open(self) -> None:
        folder = self.out if self.is_dir else self.out.parent
        if folder.exists() and not folder.is_dir():
            raise BadInput(f"{folder}: exists and is not a directory")
        folder.mkdir(parents=True, exist_ok=True)
        for path in self.files:
            self.lines[path] = repair_tail(path)
            if path.exists():
                self._read_keys(path)
        repair_tail(self.flags_path)
        for rec in json_lines(self.flags_path):
            if rec.get("dropped"):
                self.done.add(rec.get("key"))

    def _read_keys(self, path: Path) -> None:
        for number, rec in enumerate(json_lines(path), 1):
            messages = rec.get("messages") if isinstance(rec, dict) else None
            if not isinstance(messages, list) or not messages:
                raise BadInput(f"{path}:{number}: not a row this command writes (a "
                               '"messages" list); choose another --out')
            self.done.add(prompt_key(messages[:-1]))

    def existing_flags(self) -> List[dict]:
        return [rec for rec in json_lines(self.flags_path) if rec.get("flags")]

    def write(self, rows: Sequence[Tuple[str, str, dict]], flags: Sequence[dict]) -> List[int]:
        """Append ``(split, key, record)`` rows; returns each row's line number. Flags for them
        are appended after (a flag lost to a crash costs less than a row)."""
        by_file: Dict[Path, List[str]] = {}
        numbers = []
        for split_name, key, rec in rows:
            path = self.file_for(split_name)
            by_file.setdefault(path, []).append(json.dumps(rec, ensure_ascii=False))
            self.lines[path] = self.lines.get(path, 0) + 1
            numbers.append(self.lines[path])
            self.done.add(key)
        for path, lines in by_file.items():
            append_lines(path, lines)
        append_lines(self.flags_path, [json.dumps(f, ensure_ascii=False) for f in flags])
        for f in flags:
            if f.get("dropped"):
                self.done.add(f["key"])
        return numbers


def json_lines(path: Path) -> Iterable[dict]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise BadInput(f"{path}:{number}: invalid JSON; choose another --out") \
                        from None
