"""The background line index: first rows early, any row by number, cancellable."""

from __future__ import annotations

import random
import threading

import pytest

from tunedeck.core.data import line_index as li
from tunedeck.core.data.line_index import IndexCancelled, LineIndex


def write_lines(path, n: int, newline: str = "\n", bom: bool = False, final_newline=True):
    lines = [f'{{"text": "row {i} ' + "x" * (i % 50) + '"}' for i in range(n)]
    data = newline.join(lines) + (newline if final_newline else "")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode())
    return [line.encode() for line in lines]


class Gate:
    """A progress callback that holds the indexing thread after its first chunk until
    released, so a test can look at the index while it is provably unfinished."""

    def __init__(self):
        self.first_chunk = threading.Event()
        self.release = threading.Event()

    def __call__(self, message, fraction):
        self.first_chunk.set()
        self.release.wait()


def test_first_rows_are_readable_before_the_index_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr(li, "FIRST_CHUNK", 4096)
    path = tmp_path / "big.jsonl"
    lines = write_lines(path, 20000)
    gate = Gate()
    index = LineIndex(path, progress=gate, chunk_size=64 * 1024).start()
    try:
        assert index.wait_for(20)
        assert not index.done and index.fraction < 0.1
        assert index.read_lines(0, 20) == lines[:20]
        assert index.read_line(5) == lines[5]
        with pytest.raises(IndexError):
            index.read_line(19999)  # not reached yet
    finally:
        gate.release.set()
    assert index.wait()
    assert index.complete and len(index) == 20000
    index.close()


def test_random_access_is_exact(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = write_lines(path, 5000)
    with LineIndex(path, chunk_size=8192).build() as index:
        assert len(index) == 5000
        for n in random.Random(0).sample(range(5000), 300):
            assert index.read_line(n) == lines[n]
        assert index.read_line(4999) == lines[-1]
        assert index.read_lines(4990, 100) == lines[4990:]


@pytest.mark.parametrize("newline, bom, final_newline", [
    ("\r\n", True, True), ("\n", False, False), ("\r\n", False, False)])
def test_line_ends_bom_and_a_missing_final_newline(tmp_path, newline, bom, final_newline):
    path = tmp_path / "data.jsonl"
    lines = write_lines(path, 300, newline, bom, final_newline)
    with LineIndex(path, chunk_size=1000).build() as index:
        assert len(index) == 300
        assert [index.read_line(i) for i in range(300)] == lines
        assert index.read_lines(0, 300) == lines


def test_empty_file_and_single_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with LineIndex(empty).build() as index:
        assert index.complete and len(index) == 0
        assert index.wait_for(0) is False
    one = tmp_path / "one.jsonl"
    one.write_bytes(b'{"text": "only"}')
    with LineIndex(one).build() as index:
        assert len(index) == 1 and index.read_line(0) == b'{"text": "only"}'


def test_cancel_stops_the_scan_and_keeps_what_is_known(tmp_path, monkeypatch):
    monkeypatch.setattr(li, "FIRST_CHUNK", 4096)
    path = tmp_path / "big.jsonl"
    lines = write_lines(path, 20000)
    gate = Gate()
    index = LineIndex(path, progress=gate, chunk_size=64 * 1024).start()
    assert gate.first_chunk.wait(10)
    index.cancel()
    gate.release.set()
    assert index.wait()
    assert index.cancelled and not index.complete
    known = index.known_lines
    assert 0 < known < 20000
    assert index.read_line(known - 1) == lines[known - 1]
    with pytest.raises(IndexCancelled):
        index.wait_for(19999)
    index.close()
