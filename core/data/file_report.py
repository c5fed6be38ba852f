"""What checking a data file finds: its problems, each as ``FILE:LINE: message``, and the
report of the whole file that ``data check`` prints and the Data pane shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from . import formats as F
from .sources import JSONL

if TYPE_CHECKING:
    from .jsonl_check import Chunk

MAX_KEPT_PROBLEMS = 1000


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

    def add_chunk(self, c: Chunk, base_line: int) -> None:
        """Count a checked part of the file in; its line numbers start after ``base_line``."""
        self.rows += c.rows
        self.valid_rows += c.valid
        self.errors += c.errors
        self.warnings += c.warnings
        for fmt, n in c.counts.items():
            self.format_counts[fmt] = self.format_counts.get(fmt, 0) + n
        room = MAX_KEPT_PROBLEMS - len(self.problems)
        for line, is_error, message in c.issues[:max(room, 0)]:
            self.problems.append(Problem(str(self.path), base_line + line, message, is_error))
