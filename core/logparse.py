"""Turn what `mlx_lm.lora` prints into events (see events.py), incrementally.

Both formats in the wild are understood (reference: shared/reference/mlx-lm.md):

* 0.32: a header panel (``batch · iters   4 · 1,200``), then a table of val rows, train rows
  (loss ▼/▲, tok/s, cumulative tokens in thousands) and ``save`` rows; a rich progress bar
  (``train ███░░ 22% ·  9/40``), redrawn in place with ``\\r`` and cursor codes on a terminal or
  with TTY_COMPATIBLE=1; ``Test loss X, Test ppl Y.`` and tqdm's ``Calculating loss...`` bar.
* ≤0.31: ``Starting training..., iters: N`` and ``Iter N: ...`` lines (val, train, save),
  ``Saved final weights to ...``, ``Loading fine-tuned weights from ...`` (a resume).

A Python traceback becomes one ``error`` event whose message is the final exception line (the
last one of a chain), also when a Markdown copy lost its indentation. A native crash becomes an
``error`` event too: a Metal abort (``libc++abi: terminating due to uncaught exception ...
[METAL] ... Insufficient Memory``), ``terminate called ...`` with its ``what():`` line, a shell's
or faulthandler's report of a signal (``zsh: killed``, ``Segmentation fault: 11``). The cause and
what to try come from core.crash, which knows these failures. Unknown lines are ignored.

Lines with a prefix parse like bare lines: a timestamp (``ts``: ``Nov 22 10:15:00``, ISO forms,
``docker logs -t``: ``2024-05-01T10:00:00.123456789Z``) and a pipeline tool's
``[run/step/task (pid N)]``, each followed by one space.

Robustness: input arrives in arbitrary chunks (bytes or str, lines split anywhere, UTF-8 split
anywhere). Work per line is capped: a line longer than MAX_LINE characters is skipped before
any regular expression sees it (an exception message is abbreviated instead), and a partial
line held between chunks never grows past MAX_PENDING, so a megabyte line without a newline
neither hangs nor goes quadratic.
"""

from __future__ import annotations

import codecs
import os
import re
from typing import Iterable, List, Optional, Union

from .crash import ABORTED, UNCAUGHT, explain_line
from .events import Error, Event, Progress, Resume, Save, Start, Test, Train, Val

# Every line we understand is far shorter; a longer one is skipped before regexes see it.
MAX_LINE = 4096
# How much of a line still waiting for its end we keep (raw, escape codes included).
MAX_PENDING = 64 * 1024
# Exception messages can embed whole inputs; the event keeps a readable first part.
MAX_MESSAGE = 1000

# ANSI: CSI (colours, cursor moves, erase, private modes like ?25l), OSC (titles, hyperlinks)
# ended by BEL or ST, DCS/PM/APC strings, two-byte escapes, and a lone ESC.
_ANSI = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"
    r"|\][^\x07\x1b\r\n]*(?:\x07|\x1b\\)?"
    r"|[PX^_][^\x1b\r\n]*(?:\x1b\\)?"
    r"|[ -/]*[0-~])?"
)
# The sequences mlx-lm 0.32's rich console writes (its colours are fixed: truecolor theme), most
# frequent first. Removing them with str.replace first is faster than the regex alone, which
# still runs for anything else.
_KNOWN_CODES = (
    "\x1b[0m", "\x1b[38;5;244m", "\x1b[1;34m", "\x1b[34m", "\x1b[2K", "\x1b[1m", "\x1b[1;32m",
    "\x1b[39m", "\x1b[1;35m", "\x1b[1A", "\x1b[1;33m", "\x1b[?25l", "\x1b[?25h",
)

# A 0.32 train or val row exactly as rich writes it (cli_ui.TrainUI.report_train/report_val),
# possibly after the erase-line and cursor-up codes of a terminal redraw. Anything else is stripped
# and read by _row.
_RICH_ROW = re.compile(
    r"(?:\x1b\[(?:2K|1A))*  \x1b\[38;5;244m *(\d+)\x1b\[0m    \x1b\[(?:"
    r"1;3[23]m *(\S+) [▼▲]\x1b\[0m    \x1b\[1m *([\d,]+)\x1b\[0m    \x1b\[38;5;244m *([\d.]+)k"
    r"|1;35mval\x1b\[0m \x1b\[1m *(\S+)\x1b\[0m    \x1b\[38;5;244m([\d.]+)s"
    r")\x1b\[0m\s*$"
)

_NUM = r"[-+]?(?:\d[\d,]*(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"

# The count at the end of a 0.32 progress bar, after its last "·".
_BAR_COUNT = re.compile(r"\s*([\d,]+)/([\d,]+)\s*$")
_HEADER_ITERS = re.compile(r"batch · iters\s+[\d,]+\s+·\s+([\d,]+)")
# tqdm: "Calculating loss...:  50%|█████     | 1/2 [00:00<00:00,  9.28it/s]"
_TQDM_COUNT = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")
_ITER_HEAD = re.compile(r"Iter (\d+): (.*)$")
_TRAIN_031 = re.compile(
    r"Iter (\d+): Train loss ([^,]+), Learning Rate ([^,]+), It/sec ([^,]+), Tokens/sec ([^,]+), "
    r"Trained Tokens (\d+), Peak mem (\S+) GB$").match
_STARTING = re.compile(r"Starting training\.\.\., iters: (\d+)")
_TEST = re.compile(rf"Test loss ({_NUM}), Test ppl ({_NUM})")
_CHECKPOINT_ITER = re.compile(r"(\d+)_")

# A timestamp and/or a pipeline tool's task label before the line, each ended by one space
# (exactly one: a 0.32 table row starts with two spaces of its own).
_NUMERIC_TIME = (r"(?:\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
                 r"|\d\d:\d\d:\d\d(?:\.\d+)?)")
_MONTH_TIME = (r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d "
               r"\d\d:\d\d:\d\d(?:\.\d+)?")
_TASK = r"(?:\[[^\[\]]* \(pid \d+\)\](?: |$))?"
# One pattern per first character: each is cheaper than all of them in one (docker's and
# Metaflow's prefixes, on every line, are the frequent case).
_NUMERIC_PREFIX = re.compile(rf"{_NUMERIC_TIME}(?: |$){_TASK}").match
_MONTH_PREFIX = re.compile(rf"{_MONTH_TIME}(?: |$){_TASK}").match
_BRACKET_PREFIX = re.compile(
    rf"(?:\[(?:{_NUMERIC_TIME}|{_MONTH_TIME})\](?: |$))?{_TASK}").match
# A prefix starts with one of these (with "[": before a digit or with a pid label, unlike
# mlx-lm's "[WARNING]"); a line starting otherwise costs one lookup.
_PREFIXES = {**{d: _NUMERIC_PREFIX for d in "0123456789"},
             **{c: _MONTH_PREFIX for c in "JFMASOND"}, "[": _BRACKET_PREFIX}
# A traceback's exception line once Markdown removed the indentation of its frames:
# ``ValueError: ...``, ``huggingface_hub.errors.HFValidationError: ...``, ``KeyboardInterrupt``.
_EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?::|$)").match
# A traceback without an exception line this long is not one any more.
MAX_TRACEBACK_LINES = 1000

_CHAIN_MARKERS = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)
_TRACEBACK = "Traceback (most recent call last):"


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    if "\x1b" not in text:
        return text
    for code in _KNOWN_CODES:
        text = text.replace(code, "")
    return _ANSI.sub("", text) if "\x1b" in text else text


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _checkpoint_iter(path: str) -> Optional[int]:
    """7-digit iteration prefix of a numbered checkpoint file name (0000100_adapters...)."""
    m = _CHECKPOINT_ITER.match(os.path.basename(path))
    return int(m.group(1)) if m else None


class LogParser:
    """Incremental parser: ``feed(chunk)`` returns the events completed by that chunk.

    ``close()`` parses a last line that had no newline and reports a traceback still pending.
    A traceback's error event comes when the line after its exception line arrives (a chained
    exception may follow), at ``idle()`` (a follower saw the input pause) or at ``close()``.

    Attributes kept up to date for live display: ``total_iters`` (from the header or
    ``Starting training``), ``progress`` (the latest progress-bar reading, or None) and
    ``last_iter`` (the highest iteration reported since the last start).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: List[str] = []  # pieces of the line not yet ended by \r or \n
        self._pending_len = 0
        self._overlong = False  # the pending line hit MAX_PENDING; drop the rest of it
        self._in_traceback = False
        self._flat_traceback = False  # its frames lost their indentation (a Markdown copy)
        self._traceback_lines = 0
        self._error: Optional[Error] = None  # waiting for a chained exception or a what() line
        self._native = False  # the pending error is a native crash (a signal report may follow)
        self._native_line = ""  # the line that reported it
        self._last_failure: Optional[Error] = None  # since the last start, to drop its echoes
        self._testing = False  # tqdm bars after "Testing" are the test set, before are val
        self._phase_done: dict = {}  # phase -> (done, total) last reported
        self._redraws: dict = {}  # raw bar line -> its phase, the latest drawing of each phase
        self.total_iters: Optional[int] = None
        self.progress: Optional[Progress] = None
        self.last_iter = 0

    # -- input ---------------------------------------------------------------------------

    def feed(self, chunk: Union[str, bytes]) -> List[Event]:
        if isinstance(chunk, (bytes, bytearray, memoryview)):
            chunk = self._decoder.decode(bytes(chunk))
        out: List[Event] = []
        if not chunk:
            return out
        cut = max(chunk.rfind("\n"), chunk.rfind("\r"))
        if cut < 0:
            self._hold(chunk)
            return out
        head, rest = chunk[: cut + 1], chunk[cut + 1:]
        if self._pending:
            if self._overlong:
                # The rest of a line too long to keep: only its first MAX_PENDING count.
                first = min(i for i in (head.find("\n"), head.find("\r")) if i >= 0)
                head = head[first:]
            head = "".join(self._pending) + head
            self._pending, self._pending_len, self._overlong = [], 0, False
        self._lines(head, out)
        if rest:
            self._hold(rest)
        return out

    def close(self) -> List[Event]:
        """End of input: the last unterminated line counts, and a pending traceback is reported."""
        out: List[Event] = []
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._hold(tail)
        if self._pending:
            text = "".join(self._pending)
            self._pending, self._pending_len, self._overlong = [], 0, False
            self._lines(text, out)
        self._flush_error(out)
        return out

    def idle(self) -> List[Event]:
        """The input paused: an error held back for a line that could still add to it (a chained
        exception, a ``what():`` line) comes now. A crashed process writes nothing more."""
        out: List[Event] = []
        if not self._in_traceback:
            self._flush_error(out)
        return out

    def _hold(self, text: str) -> None:
        if self._overlong:
            return
        room = MAX_PENDING - self._pending_len
        if len(text) > room:
            text = text[:room]
            self._overlong = True
        self._pending.append(text)
        self._pending_len += len(text)

    def _lines(self, block: str, out: List[Event]) -> None:
        redraws = self._redraws
        line_fn, row_fn, iter_fn = self._line, self._row, self._iter_line
        # Escape sequences never contain \r or \n: splitting first is safe, and lets a line
        # be recognised (a bar redrawn, a table row as rich writes it) before any stripping.
        # Only _line and _flush_error enter or leave a traceback: re-read the state after them.
        plain = not self._in_traceback and self._error is None
        max_raw = 4 * MAX_LINE
        prefixes = _PREFIXES
        for raw in block.splitlines():
            if not raw:
                continue
            if len(raw) > max_raw and not self._in_traceback:
                # No line mlx-lm prints is this long, even with its colour codes, and a cut
                # line could misread (a number cut short): skip it before any other work.
                self._flush_error(out)
                plain = True
                continue
            if "\x1b" in raw:
                if raw in redraws:
                    continue  # a progress bar drawn again with the same count
                if plain:
                    # 0.32's table rows are most of its output: read them as rich writes them
                    # (a fixed set of colour codes), which is cheaper than stripping.
                    m = _RICH_ROW.match(raw)
                    if m:
                        self._rich_row(m, out)
                        continue
                line = strip_ansi(raw[:max_raw])
                if not line:
                    continue
            else:
                line = raw
            if len(line) > MAX_LINE:
                # As above, once the colour codes are gone; an exception message is kept,
                # abbreviated.
                if not self._in_traceback:
                    self._flush_error(out)
                    plain = True
                    continue
                line = line[:MAX_LINE]
            c = line[0]
            if c == "[" and plain and line.startswith("[WARNING]"):
                continue  # mlx-lm's warnings (long sequences): frequent, nothing to read
            # mlx-lm's own lines never start like a prefix: the test costs its frequent lines
            # nothing (a prefixed table row is read once stripped, not as rich writes it).
            prefix = prefixes.get(c)
            if prefix is not None and (c != "[" or line[1:2].isdigit() or " (pid " in line):
                m = prefix(line)
                if m and (end := m.end()):
                    line = line[end:]
                    if not line:
                        continue
                    c = line[0]
            if not plain:
                line_fn(line, out)
                plain = not self._in_traceback and self._error is None
                continue
            # The frequent lines go straight to their reader; the rest through _line.
            if c == " ":
                row_fn(line, out)
            elif c == "I" and line.startswith("Iter "):
                iter_fn(line, out)
            elif (c == "t" or c == "v") and (phase := self._bar(line, out)):
                # Only each phase's latest drawing is remembered: the same count drawn
                # again after another one (a new validation) must still count.
                for old, old_phase in list(redraws.items()):
                    if old_phase == phase:
                        del redraws[old]
                redraws[raw] = phase
            else:
                line_fn(line, out)
                plain = not self._in_traceback and self._error is None

    def _rich_row(self, m: "re.Match", out: List[Event]) -> None:
        it = int(m.group(1))
        if it > self.last_iter:
            self.last_iter = it
        loss, tok, tokens, val_loss, val_s = m.group(2, 3, 4, 5, 6)
        try:
            if loss is not None:
                out.append(Train(it, float(loss), None, None, float(tok.replace(",", "")),
                                 round(float(tokens) * 1000)))
            else:
                out.append(Val(it, float(val_loss), float(val_s)))
        except ValueError:
            return  # shaped like a row, but not numbers

    # -- one line ------------------------------------------------------------------------

    def _line(self, line: str, out: List[Event]) -> None:
        if self._in_traceback:
            self._traceback_line(line)
            return
        if self._error is not None:
            if line.startswith(_CHAIN_MARKERS):
                return
            if self._native and self._native_continues(line):
                return
            if not line.startswith(_TRACEBACK):
                self._flush_error(out)
        if not self._known_line(line, out):
            failure = explain_line(line)
            if failure is not None:
                self._crash(failure, line, out)

    def _known_line(self, line: str, out: List[Event]) -> bool:
        """Read a line mlx-lm prints; False if it is none of them."""
        c = line[0]
        if c == " ":
            self._row(line, out)
            return True
        if c == "I":
            if line.startswith("Iter "):
                self._iter_line(line, out)
                return True
        elif c == "t" or c == "v":
            return self._bar(line, out) is not None
        elif c == "C":
            if line.startswith("Calculating loss"):
                m = _TQDM_COUNT.search(line)
                if m:
                    phase = "test" if self._testing else "val"
                    self._progress(phase, int(m.group(1)), int(m.group(2)), out)
                return True
        elif c == "T":
            if line.startswith(_TRACEBACK):
                self._in_traceback, self._flat_traceback = True, False
                self._traceback_lines = 0
                return True
            if line.startswith("Test loss"):
                m = _TEST.match(line)
                if m:
                    self._last_failure = None
                    out.append(Test(_num(m.group(1)), _num(m.group(2))))
                return True
            if line.startswith("Testing"):
                self._testing = True
                return True
        elif c == "S":
            if line.startswith("Starting training"):
                m = _STARTING.match(line)
                if m:
                    self._start(int(m.group(1)), out)
                return True
            if line.startswith("Saved final weights to "):
                path = line[len("Saved final weights to "):].rstrip().rstrip(".")
                out.append(Save(self.last_iter or self.total_iters, os.path.basename(path)))
                return True
        elif c == "L":
            if line.startswith("Loading fine-tuned weights from "):
                path = line[len("Loading fine-tuned weights from "):].strip()
                out.append(Resume(_checkpoint_iter(path), path))
                return True
        elif c == "[":
            if line.startswith("[WARNING]"):
                return True  # mlx-lm's own warnings (long sequences): frequent, never a crash
        elif c == "│" or c == "|":
            if "batch · iters" in line:
                m = _HEADER_ITERS.search(line)
                if m:
                    self._start(int(m.group(1).replace(",", "")), out)
                return True
        return False

    # -- failures --------------------------------------------------------------------------

    def _traceback_line(self, line: str) -> None:
        """Inside a traceback: frames are skipped until the exception line."""
        if line[0] in " \t":
            return  # a frame, its source line or the ^^^ markers
        if line.startswith('File "'):
            # Frames without their indentation (a traceback pasted into Markdown): source
            # lines are unindented too, so only a line shaped like an exception ends it.
            self._flat_traceback = True
            return
        if self._flat_traceback and not _EXCEPTION_LINE(line):
            self._traceback_lines += 1
            if self._traceback_lines > MAX_TRACEBACK_LINES:
                self._in_traceback = False
            return
        exception = line.strip()[:MAX_MESSAGE]
        failure = explain_line(exception)
        self._error = (Error(failure.cause, failure.advice) if failure is not None
                       else Error(exception))
        self._native = False
        self._last_failure = self._error
        self._in_traceback = False

    def _crash(self, failure, line: str, out: List[Event]) -> None:
        """A native crash or a signal report: held one line, since its details may follow."""
        last = self._last_failure
        if last is not None and (failure is ABORTED or last.message == failure.cause):
            return  # the shell's "abort" after an explained abort, or the same crash again
        self._flush_error(out)
        self._error = self._last_failure = Error(failure.cause, failure.advice)
        self._native, self._native_line = True, line

    def _native_continues(self, line: str) -> bool:
        """A line that completes or echoes the pending native crash (True), or another (False)."""
        pending = self._error
        assert pending is not None  # called only while a native crash is pending
        if line.lstrip().startswith("what():") and self._native_line:
            # libstdc++'s "terminate called after throwing ..." gives the message on this line.
            failure = explain_line(f"{self._native_line} {line.strip()}"[:MAX_LINE])
            if failure is not None:
                self._error = self._last_failure = Error(failure.cause, failure.advice)
            return True
        failure = explain_line(line)
        if failure is None:
            return False
        if failure is ABORTED or failure.cause == pending.message:
            return True  # the abort that follows an uncaught exception, reported again
        if pending.message.startswith(UNCAUGHT):
            # The exception's message on a line of its own (libc++abi wraps a long one).
            self._error = self._last_failure = Error(failure.cause, failure.advice)
            return True
        return False

    def _start(self, total: int, out: List[Event]) -> None:
        self.total_iters = total
        self.last_iter = 0
        self.progress = None
        self._phase_done.clear()
        self._redraws.clear()
        self._testing = False
        self._last_failure = None
        out.append(Start(total))

    def _seen(self, it: int) -> None:
        if it > self.last_iter:
            self.last_iter = it

    def _row(self, line: str, out: List[Event]) -> None:
        """A 0.32 table row: ``5  4.876 ▼  1,547  0.8k``, ``10  val 3.436  0.10s``, ``save  F``."""
        parts = line.split()
        if not parts:
            return
        first = parts[0]
        try:
            if first.isdigit():
                n = len(parts)
                last = parts[-1]
                if n == 4 and parts[1] == "val" and last[-1] == "s":
                    it = int(first)
                    out.append(Val(it, float(parts[2]), float(last[:-1])))
                elif (n == 5 or n == 4) and last[-1] == "k":
                    # The ▼/▲ column compares with the previous report; it is derived, not data.
                    it = int(first)
                    out.append(Train(it, float(parts[1]), None, None,
                                     float(parts[-2].replace(",", "")),
                                     round(float(last[:-1]) * 1000)))
                else:
                    return
                if it > self.last_iter:
                    self.last_iter = it
            elif first == "save" and len(parts) >= 2:
                name = os.path.basename(line.split("save", 1)[1].strip())
                saved = _checkpoint_iter(name)
                if saved is not None:
                    self._seen(saved)
                out.append(Save(saved, name))
        except ValueError:
            return  # a line that only looks like a row

    def _bar(self, line: str, out: List[Event]) -> Optional[str]:
        """A 0.32 progress bar (``train ███░ 22% ·  9/40`` or ``val ...``): its phase, or None."""
        if line.startswith("train "):
            phase = "train"
        elif line.startswith("val "):
            phase = "val"
        else:
            return None
        dot = line.rfind("·")
        if dot < 0 or "%" not in line:
            return None
        m = _BAR_COUNT.match(line, dot + 1)
        if not m:
            return None
        done, total = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
        if phase == "train":
            self._seen(done)
        self._progress(phase, done, total, out)
        return phase

    def _progress(self, phase: str, done: int, total: int, out: List[Event]) -> None:
        key = (done, total)
        if self._phase_done.get(phase) == key:
            return  # a redraw of the same count
        self._phase_done[phase] = key
        self.progress = Progress(phase, done, total)
        out.append(self.progress)

    def _iter_line(self, line: str, out: List[Event]) -> None:
        try:
            # The train report of 0.2x-0.31, most of its lines: one regex that captures the
            # seven numbers makes fewer strings than splitting the line into its 19 words.
            m = _TRAIN_031(line)
            if m:
                i, loss, lr, its, toks, trained, mem = m.groups()
                it = int(i)
                out.append(Train(it, float(loss), float(lr), float(its), float(toks), int(trained),
                                 float(mem)))
                if it > self.last_iter:
                    self.last_iter = it
                return
            parts = line.split(" ")
            if (len(parts) == 8 and parts[2] == "Val" and parts[6] == "took"
                    and parts[7].endswith("s")):
                it = int(parts[1][:-1])
                out.append(Val(it, float(parts[4][:-1]), float(parts[7][:-1])))
                self._seen(it)
                return
        except ValueError:
            pass
        m = _ITER_HEAD.match(line)
        if not m:
            return
        it, rest = int(m.group(1)), m.group(2).strip()
        if rest.startswith("Saved adapter weights to "):
            # "A and B." names the latest file and the numbered checkpoint; older versions
            # name one file.
            paths = rest[len("Saved adapter weights to "):].rstrip(".")
            name = os.path.basename(paths.rsplit(" and ", 1)[-1])
            self._seen(it)
            out.append(Save(it, name))
            return
        fields = self._fields(rest)
        if "Train loss" in fields:
            self._seen(it)
            out.append(Train(it, fields["Train loss"], fields.get("Learning Rate"),
                             fields.get("It/sec"), fields.get("Tokens/sec"),
                             (int(fields["Trained Tokens"]) if "Trained Tokens" in fields
                              else None),
                             fields.get("Peak mem")))
        elif "Val loss" in fields:
            self._seen(it)
            out.append(Val(it, fields["Val loss"], fields.get("Val took")))

    @staticmethod
    def _fields(rest: str) -> dict:
        """``Name value, Name value`` pairs of other ``Iter N:`` wordings (units dropped)."""
        fields = {}
        for part in rest.split(", "):
            part = part.strip().rstrip(".")
            if part.endswith(" GB"):
                part = part[:-3]
            name, _, value = part.rpartition(" ")
            if name == "Val took" and value.endswith("s"):
                value = value[:-1]
            try:
                fields[name] = _num(value)
            except ValueError:
                continue
        return fields

    def _flush_error(self, out: List[Event]) -> None:
        if self._error is not None:
            out.append(self._error)
            self._error = None
            self._native = False


def parse_chunks(chunks: Iterable[Union[str, bytes]]) -> List[Event]:
    parser = LogParser()
    events: List[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return events


def parse_text(text: Union[str, bytes]) -> List[Event]:
    """All events of a complete log held in memory."""
    return parse_chunks([text])


def parse_file(path: Union[str, os.PathLike], chunk_size: int = 1 << 20) -> List[Event]:
    """All events of a log file, read in chunks (a log of any size)."""

    def chunks():
        with open(path, "rb") as f:
            while True:
                data = f.read(chunk_size)
                if not data:
                    return
                yield data

    return parse_chunks(chunks())
