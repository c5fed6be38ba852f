"""Reading data files record by record, with the line of every record and of every problem.

Three containers: JSON Lines (what mlx-lm reads), a JSON array of records (LLaMA-Factory's
``.json`` files) and plain text. The container is decided from the content, not only the name,
since ``.json`` files holding JSON Lines are common.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple, Union

from ..progress import Progress

JSONL = "jsonl"
JSON_ARRAY = "json"
TXT = "txt"

BOM = b"\xef\xbb\xbf"
TEXT_SUFFIXES = (".txt", ".text", ".md")
DATA_SUFFIXES = (".jsonl", ".json", ".txt")

_WS = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, i: int) -> int:
    """The first position at or after ``i`` that is not JSON whitespace."""
    m = _WS.match(text, i)
    assert m is not None  # the pattern matches the empty string, so everywhere
    return m.end()


_DECODER = json.JSONDecoder()


class SourceProblem:
    """A problem found while reading: at ``line``, ``message``; always an error."""

    __slots__ = ("line", "message")

    def __init__(self, line: int, message: str):
        self.line = line
        self.message = message

    def __repr__(self) -> str:
        return f"SourceProblem({self.line}, {self.message!r})"


Item = Tuple[int, Union[Any, SourceProblem]]


def sniff_container(path: Path) -> str:
    """JSONL, JSON_ARRAY or TXT, from the suffix and the first non-blank character."""
    if path.suffix.lower() in TEXT_SUFFIXES:
        return TXT
    with open(path, "rb") as f:
        head = f.read(65536)
    head = head[len(BOM):] if head.startswith(BOM) else head
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return JSON_ARRAY
    if stripped.startswith(b"{") or path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return JSONL
    return TXT


def json_error_message(exc: json.JSONDecodeError, text: str) -> str:
    message = f"invalid JSON: {exc.msg} (column {exc.colno})"
    if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        message += "; the line ends before the record does (truncated?)"
    return message


def utf8_error_message(exc: UnicodeDecodeError, raw: bytes) -> str:
    return f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line"


def parse_line(text: str, line: int) -> Item:
    """One JSONL line as (line, record) or (line, SourceProblem); blank lines are the caller's."""
    try:
        return line, json.loads(text)
    except json.JSONDecodeError as exc:
        return line, SourceProblem(line, json_error_message(exc, text))
    except RecursionError:
        return line, SourceProblem(line, "invalid JSON: nested too deeply")


def iter_jsonl(path: Path, progress: Optional[Progress] = None, label: str = "") -> Iterator[Item]:
    """Every non-blank line of a JSONL file, streamed (the file is never held whole)."""
    size = max(1, os.path.getsize(path))
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if progress is not None and number % 2000 == 0:
                progress(label, f.tell() / size)
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            try:
                # Without its line end, a truncated line reads "Unterminated string" rather
                # than "Invalid control character".
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield number, SourceProblem(number, utf8_error_message(exc, raw))
                continue
            if text.strip():
                yield parse_line(text, number)
    if progress is not None:
        progress(label, 1.0)


def _decode_whole(data: bytes) -> Tuple[str, list]:
    """Decode a whole file, reporting each undecodable line and replacing its bad bytes."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    problems = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(SourceProblem(number, utf8_error_message(exc, raw)))
    return data.decode("utf-8", errors="replace"), problems


def iter_json_array(path: Path) -> Iterator[Item]:
    """The elements of a file holding one JSON array, each with the line it starts on.

    A syntax error inside an element ends the reading (JSON gives no safe place to resume);
    the records before it are still yielded.
    """
    text, problems = _decode_whole(Path(path).read_bytes())
    for p in problems:
        yield p.line, p
    n = len(text)
    line = 1
    counted_to = 0

    def line_at(pos: int) -> int:
        nonlocal line, counted_to
        if pos >= counted_to:
            line += text.count("\n", counted_to, pos)
        else:
            line -= text.count("\n", pos, counted_to)
        counted_to = pos
        return line

    i = _skip_space(text, 0)
    if i >= n or text[i] != "[":
        yield 1, SourceProblem(1, "expected a JSON array ('[') at the start of the file")
        return
    i += 1
    comma = None  # position of the comma after the previous element
    count = 0
    while True:
        i = _skip_space(text, i)
        if i >= n:
            yield line_at(n), SourceProblem(line_at(n), "the file ends inside the array "
                                                         "(missing ']'; truncated?)")
            return
        if text[i] == "]":
            if comma is not None:
                at = line_at(comma)
                yield at, SourceProblem(at, "trailing comma after the last element "
                                            "(JSON does not allow it; remove it)")
            i += 1
            break
        if count and comma is None:
            at = line_at(i)
            yield at, SourceProblem(at, "expected ',' or ']' between array elements")
            return
        start_line = line_at(i)
        try:
            obj, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            at = line_at(exc.pos)
            col = exc.pos - text.rfind("\n", 0, exc.pos)
            yield at, SourceProblem(at, f"invalid JSON: {exc.msg} (column {col}); "
                                        "the rest of the array is not read")
            return
        except RecursionError:
            yield start_line, SourceProblem(start_line, "invalid JSON: nested too deeply")
            return
        count += 1
        yield start_line, obj
        i = _skip_space(text, end)
        if i < n and text[i] == ",":
            comma = i
            i += 1
        else:
            comma = None
    i = _skip_space(text, i)
    if i < n:
        at = line_at(i)
        yield at, SourceProblem(at, "extra data after the end of the array")


def iter_records(path: Path, container: str, progress: Optional[Progress] = None,
                 label: str = "") -> Iterator[Item]:
    """Records of a JSONL file or a JSON array, with problems interleaved."""
    if container == JSON_ARRAY:
        if progress is not None:
            progress(label, None)
        return iter_json_array(path)
    return iter_jsonl(path, progress, label)
