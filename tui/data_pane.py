"""The Data pane: the project's dataset files, their first rows shown exactly as written.

Rows are read in a thread worker (a dataset can be gigabytes; only the first screenful is read
here) and shown literally: markup and control characters in a row are data, not formatting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, Select

from tunedeck.core.data.formats import check_record, describe, record_format

from .literal import visible

FIRST_ROWS = 500
PREVIEW_CHARS = 300


def preview(record) -> str:
    """The text a person reads first in a record: its messages, or its fields, on one line."""
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        parts = [f"{m.get('role', '?')}: {m.get('content', '')}" for m in record["messages"]
                 if isinstance(m, dict)]
        text = "  ".join(parts)
    elif isinstance(record, dict):
        text = "  ".join(f"{k}: {v}" for k, v in record.items())
    else:
        text = json.dumps(record, ensure_ascii=False)
    return visible(text[:PREVIEW_CHARS])


def read_rows(path: Path, limit: int) -> list[tuple[int, str, str, str]]:
    """(line, format, problem, preview) of the first ``limit`` non-blank lines."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                rows.append((number, "—", f"not JSON: {exc.msg}", visible(line.rstrip("\n")[:PREVIEW_CHARS])))
            else:
                fmt = record_format(record)
                issues = check_record(record, fmt) if fmt else [(True, "no known format")]
                problem = "; ".join(message for _, message in issues or [])
                rows.append((number, describe(fmt).split(" ")[0], problem, preview(record)))
            if len(rows) >= limit:
                break
    return rows


class RowsRead(Message):
    def __init__(self, path: Path, rows: list, error: Optional[str] = None):
        super().__init__()
        self.path = path
        self.rows = rows
        self.error = error


class DataPane(Vertical):
    PANE_TITLE = "Data"

    def __init__(self, project: Optional[Path], **kwargs):
        super().__init__(**kwargs)
        self.data_dir = project / "data" if project else None

    def _files(self) -> list[Path]:
        if self.data_dir is None or not self.data_dir.is_dir():
            return []
        splits = {"train.jsonl": 0, "valid.jsonl": 1, "test.jsonl": 2}  # mlx-lm's order first
        return sorted((p for p in self.data_dir.iterdir() if p.suffix == ".jsonl"),
                      key=lambda p: (splits.get(p.name, 3), p.name))

    def compose(self) -> ComposeResult:
        files = self._files()
        with Horizontal(id="data-bar"):
            yield Select([(p.name, p) for p in files], value=files[0] if files else Select.NULL,
                         allow_blank=not files, compact=True, prompt="no dataset", id="data-file")
            yield Label("", id="data-summary")
        table = DataTable(cursor_type="row", zebra_stripes=True, id="data-rows")
        table.add_columns("line", "format", "problem", "row")
        yield table

    def on_mount(self) -> None:
        files = self._files()
        if files:
            self._read(files[0])
        else:
            where = self.data_dir or "this directory"
            self.query_one("#data-summary", Label).update(Text(f"no .jsonl files in {where}"))

    def focus_main(self) -> None:
        self.query_one("#data-rows", DataTable).focus()

    @on(Select.Changed, "#data-file")
    def _file_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self._read(event.value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-rows")
    def _read(self, path: Path) -> None:
        try:
            self.post_message(RowsRead(path, read_rows(path, FIRST_ROWS)))
        except OSError as exc:
            self.post_message(RowsRead(path, [], f"{path}: {exc.strerror}"))

    @on(RowsRead)
    def _rows_read(self, message: RowsRead) -> None:
        table = self.query_one("#data-rows", DataTable)
        table.clear()
        for number, fmt, problem, text in message.rows:
            table.add_row(Text(str(number), justify="right"), Text(fmt), Text(problem), Text(text))
        bad = sum(1 for row in message.rows if row[2])
        summary = message.error or (f"{message.path.name}: first {len(message.rows)} rows"
                                    + (f", {bad} with problems" if bad else ""))
        self.query_one("#data-summary", Label).update(Text(summary))
