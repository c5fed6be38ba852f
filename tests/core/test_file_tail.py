"""The one tail of growing files (core/file_tail.py): torn lines wait, and a file truncated or
replaced by another is read again from its start, by every reader built on it."""

import os

from tunedeck.core.events import EventFileReader, EventWriter, Start, Train
from tunedeck.core.file_tail import FileTail, read_appended


def test_a_torn_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "train.log"
    tail = FileTail(path)
    assert tail.read_lines() == []  # not there yet
    path.write_bytes(b"Iter 1: Train loss 2.0\nIter 2: Tr")
    assert tail.read_lines() == ["Iter 1: Train loss 2.0"]
    with open(path, "ab") as f:
        f.write(b"ain loss 1.9\n")
    assert tail.read_lines() == ["Iter 2: Train loss 1.9"]


def test_a_file_replaced_by_a_longer_one_is_read_from_its_start(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(b"old 1\nold 2\n")
    tail = FileTail(path)
    assert tail.read_lines() == ["old 1", "old 2"]
    # A new file renamed over the old one (a rotation, an editor's save), already longer than
    # what was read: its size alone does not tell.
    new = tmp_path / "train.log.new"
    new.write_bytes(b"new 1\nnew 2\nnew 3\n")
    os.replace(new, path)
    assert tail.read_lines() == ["new 1", "new 2", "new 3"]


def test_a_truncated_file_is_read_from_its_start(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(b"a long first line\nanother\n")
    tail = FileTail(path)
    assert len(tail.read_lines()) == 2
    with open(path, "wb") as f:  # same inode, shorter
        f.write(b"again\n")
    assert tail.read_lines() == ["again"]


def test_a_capped_read_brings_the_rest_next_time(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(b"line %d\n" % n for n in range(100)))
    tail = FileTail(path, chunk_bytes=64)
    lines = []
    while batch := tail.read_lines():
        lines += batch
    assert lines == [f"line {n}" for n in range(100)]


def test_history_starts_near_the_end_without_a_fragment(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(b"".join(b"line %03d\n" % n for n in range(100)))
    assert FileTail(path, history_bytes=30).read_lines() == ["line 097", "line 098", "line 099"]


def test_the_event_reader_reads_a_truncated_metrics_file_again(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = EventWriter(path)
    writer.append(Start(total_iters=10))
    writer.append(Train(iter=1, loss=2.0))
    writer.close()
    reader = EventFileReader(path)
    assert reader.read_new() == [Start(total_iters=10), Train(iter=1, loss=2.0)]
    path.write_text(Train(iter=5, loss=1.0).to_json() + "\n")
    assert reader.read_new() == [Train(iter=5, loss=1.0)]


def test_read_appended_starts_over_on_a_shorter_file_and_reads_nothing_of_a_missing_one(tmp_path):
    path = tmp_path / "train.log"
    assert read_appended(path, 7) == (b"", 7)
    path.write_bytes(b"abc\n")
    assert read_appended(path, 10) == (b"abc\n", 4)
    assert read_appended(path, 2) == (b"c\n", 4)
