"""What the lines of a training log look like: the regular expressions the log parser
(core.logparse) reads mlx-lm's output with, the terminal escape codes it strips, and the prefixes
(timestamps, a pipeline tool's task label) that tools put before each line.

Reference for both mlx-lm formats: shared/reference/mlx-lm.md.
"""

from __future__ import annotations

import os
import re
from typing import Optional

# Every line we understand is far shorter; a longer one is skipped before regexes see it.
MAX_LINE = 4096

# ANSI: CSI (colours, cursor moves, erase, private modes like ?25l), OSC (titles, hyperlinks)
# ended by BEL or ST, DCS/PM/APC strings, two-byte escapes, and a lone ESC.
ANSI = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"
    r"|\][^\x07\x1b\r\n]*(?:\x07|\x1b\\)?"
    r"|[PX^_][^\x1b\r\n]*(?:\x1b\\)?"
    r"|[ -/]*[0-~])?"
)
# The sequences mlx-lm 0.32's rich console writes (its colours are fixed: truecolor theme), most
# frequent first. Removing them with str.replace first is faster than the regex alone, which
# still runs for anything else.
KNOWN_CODES = (
    "\x1b[0m", "\x1b[38;5;244m", "\x1b[1;34m", "\x1b[34m", "\x1b[2K", "\x1b[1m", "\x1b[1;32m",
    "\x1b[39m", "\x1b[1;35m", "\x1b[1A", "\x1b[1;33m", "\x1b[?25l", "\x1b[?25h",
)

# A 0.32 train or val row exactly as rich writes it (cli_ui.TrainUI.report_train/report_val),
# possibly after the erase-line and cursor-up codes of a terminal redraw. Anything else is stripped
# and read by LogParser._row.
RICH_ROW = re.compile(
    r"(?:\x1b\[(?:2K|1A))*  \x1b\[38;5;244m *(\d+)\x1b\[0m    \x1b\[(?:"
    r"1;3[23]m *(\S+) [▼▲]\x1b\[0m    \x1b\[1m *([\d,]+)\x1b\[0m    \x1b\[38;5;244m *([\d.]+)k"
    r"|1;35mval\x1b\[0m \x1b\[1m *(\S+)\x1b\[0m    \x1b\[38;5;244m([\d.]+)s"
    r")\x1b\[0m\s*$"
)

NUM = r"[-+]?(?:\d[\d,]*(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"

# The count at the end of a 0.32 progress bar, after its last "·".
BAR_COUNT = re.compile(r"\s*([\d,]+)/([\d,]+)\s*$")
HEADER_ITERS = re.compile(r"batch · iters\s+[\d,]+\s+·\s+([\d,]+)")
# tqdm: "Calculating loss...:  50%|█████     | 1/2 [00:00<00:00,  9.28it/s]"
TQDM_COUNT = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")
ITER_HEAD = re.compile(r"Iter (\d+): (.*)$")
TRAIN_031 = re.compile(
    r"Iter (\d+): Train loss ([^,]+), Learning Rate ([^,]+), It/sec ([^,]+), Tokens/sec ([^,]+), "
    r"Trained Tokens (\d+), Peak mem (\S+) GB$").match
STARTING = re.compile(r"Starting training\.\.\., iters: (\d+)")
TEST = re.compile(rf"Test loss ({NUM}), Test ppl ({NUM})")
CHECKPOINT_ITER = re.compile(r"(\d+)_")

# A timestamp and/or a pipeline tool's task label before the line, each ended by one space
# (exactly one: a 0.32 table row starts with two spaces of its own). Digits are [0-9], not \d:
# no tool writes other digits, and sre checks a range faster than the Unicode digit category.
NUMERIC_TIME = (r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?"
                r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?|[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)")
MONTH_TIME = (r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-9][0-9] "
              r"[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?")
TASK_LABEL = r"\[[^\[\]\r\n]* \(pid [0-9]+\)\]"
_TASK = rf"(?:{TASK_LABEL}(?: |$))?"
# One pattern per first character: each is cheaper than all of them in one (docker's and
# Metaflow's prefixes, on every line, are the frequent case).
_NUMERIC_PREFIX = re.compile(rf"{NUMERIC_TIME}(?: |$){_TASK}").match
_MONTH_PREFIX = re.compile(rf"{MONTH_TIME}(?: |$){_TASK}").match
_BRACKET_PREFIX = re.compile(rf"(?:\[(?:{NUMERIC_TIME}|{MONTH_TIME})\](?: |$))?{_TASK}").match
# A prefix starts with one of these (with "[": before a digit or with a pid label, unlike
# mlx-lm's "[WARNING]"); a line starting otherwise costs one lookup.
PREFIXES = {**{d: _NUMERIC_PREFIX for d in "0123456789"},
            **{c: _MONTH_PREFIX for c in "JFMASOND"}, "[": _BRACKET_PREFIX}
# A line break and the prefix of the line after it, if it has one: splitting a whole block of
# prefixed lines with this is one pass in C, where reading each line's prefix with its own match
# was a fifth of the parse. It starts with a plain "\n", which sre scans for fast.
PREFIXED_LINE_BREAK = re.compile(
    rf"\n(?:(?:{NUMERIC_TIME}|{MONTH_TIME}|\[(?:{NUMERIC_TIME}|{MONTH_TIME})\]) (?:{TASK_LABEL} )?"
    rf"|{TASK_LABEL} )?")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    if "\x1b" not in text:
        return text
    for code in KNOWN_CODES:
        text = text.replace(code, "")
    return ANSI.sub("", text) if "\x1b" in text else text


def number(text: str) -> float:
    """A figure as mlx-lm prints it (``1,547``, ``nan``)."""
    return float(text.replace(",", ""))


def checkpoint_iter(path: str) -> Optional[int]:
    """7-digit iteration prefix of a numbered checkpoint file name (0000100_adapters...)."""
    m = CHECKPOINT_ITER.match(os.path.basename(path))
    return int(m.group(1)) if m else None
