"""A block of prefixed lines is split at its line breaks and their prefixes in one pass
(core.log_patterns.PREFIXED_LINE_BREAK); the lines it leaves a prefix on lose it one by one. Both
ways must read a log the same, wherever the input's chunks happen to end."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from tunedeck.core.events import Train
from tunedeck.core.logparse import LogParser, parse_text

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
DOCKER = "2024-05-01T10:00:00.123456789Z "
METAFLOW = "2025-10-30 17:03:52.856 [1761840227122170/train_model/4 (pid 79246)] "


def prefixed(bare: bytes, prefix: str) -> bytes:
    """``bare`` as docker and ts write it: the prefix after each "\\n" only, not after a "\\r"."""
    return b"".join(prefix.encode() + line for line in re.split(rb"(?<=\n)", bare) if line)


def in_chunks(data: bytes, seed: int) -> list:
    rng = random.Random(seed)
    parser, events, at = LogParser(), [], 0
    while at < len(data):
        size = rng.choice([1, 7, 64, 900, 5000])
        events += parser.feed(data[at:at + size])
        at += size
    return events + parser.close()


@pytest.mark.parametrize("name", ["v031_test.log", "v032_test.log", "v032_tty.log", "v032_crash.log"])
@pytest.mark.parametrize("prefix", [DOCKER, METAFLOW, "Nov 22 10:15:00 "])
def test_a_prefixed_log_reads_the_same_in_any_chunks(name, prefix):
    data = prefixed((LOGS / name).read_bytes(), prefix)
    whole = parse_text(data)
    assert of_kind(whole, Train)  # not vacuous
    for seed in range(3):
        assert in_chunks(data, seed) == whole


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_only_the_first_line_of_a_block_needs_its_prefix(line_end):
    """The split starts from the block's first line; later lines without a prefix still read."""
    bare = ("Iter 10: Train loss 2.000, Learning Rate 1.000e-05, It/sec 1.000, Tokens/sec 100.000, "
            "Trained Tokens 1000, Peak mem 1.000 GB")
    text = DOCKER + bare + line_end + bare.replace("Iter 10", "Iter 20") + line_end
    assert [e.iter for e in of_kind(parse_text(text), Train)] == [10, 20]


def test_a_prefix_around_another_prefix_goes_too():
    """docker logs -t around a tool that prefixes its own lines: both go, split or not."""
    line = f"{DOCKER}{METAFLOW}Test loss 1.000, Test ppl 2.718.\n"
    whole = parse_text(line * 3)
    assert [e.kind for e in whole] == ["test"] * 3
    assert in_chunks((line * 3).encode(), 0) == whole


def of_kind(events, kind):
    return [e for e in events if isinstance(e, kind)]
