"""Turn what `mlx_lm.lora` prints into events (see events.py), incrementally.

Both formats in the wild are understood (reference: shared/reference/mlx-lm.md):

* 0.32: a header panel (``batch · iters   4 · 1,200``), then a table of val rows, train rows
  (loss ▼/▲, tok/s, cumulative tokens in thousands) and ``save`` rows; a rich progress bar
  (``train ███░░ 22% ·  9/40``), redrawn in place with ``\\r`` and cursor codes on a terminal or
  with TTY_COMPATIBLE=1; ``Test loss X, Test ppl Y.`` and tqdm's ``Calculating loss...`` bar.
* ≤0.31: ``Starting training..., iters: N`` and ``Iter N: ...`` lines (val, train, save),
  ``Saved final weights to ...``, ``Loading fine-tuned weights from ...`` (a resume).

A Python traceback or a native crash (a Metal abort, a signal report) becomes one ``error``
event (core.log_failures reads them; core.crash explains them). Unknown lines are ignored. The
lines' patterns, the escape codes and the prefixes are in core.log_patterns.

Lines with a prefix parse like bare lines: a timestamp (``ts``: ``Nov 22 10:15:00``, ISO forms,
``docker logs -t``: ``2024-05-01T10:00:00.123456789Z``) and a pipeline tool's
``[run/step/task (pid N)]``, each followed by one space. A block of input whose first line has
a prefix is split at its line breaks and their prefixes in one pass (PREFIXED_LINE_BREAK); any
line the split leaves a prefix on (after a ``\r``, a prefix alone) loses it on its own. In such
a block only ``\n`` and ``\r`` end lines: the rarer breaks str.splitlines also knows (``\v``,
``\f``, ``\x1c``-``\x1e``, U+0085, U+2028, U+2029) stay inside their line; no tool that adds prefixes ends lines with them.

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

from .crash import explain_line
from .events import Event, Progress, Resume, Save, Start, Test, Train, Val
from .log_failures import TRACEBACK, FailureReader
from .log_patterns import (BAR_COUNT, HEADER_ITERS, ITER_HEAD, MAX_LINE, PREFIXED_LINE_BREAK, PREFIXES,
                           RICH_ROW, STARTING, TEST, TQDM_COUNT, TRAIN_031, checkpoint_iter, number,
                           strip_ansi)

# How much of a line still waiting for its end we keep (raw, escape codes included).
MAX_PENDING = 64 * 1024

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
        self._failures = FailureReader()
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
        self._failures.flush(out)
        return out

    def idle(self) -> List[Event]:
        """The input paused: an error held back for a line that could still add to it (a chained
        exception, a ``what():`` line) comes now. A crashed process writes nothing more."""
        out: List[Event] = []
        if not self._failures.in_traceback:
            self._failures.flush(out)
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

    def _lines(self, block: str, out: List[Event], prefixed: Optional[bool] = None) -> None:
        """Read the lines of ``block``. ``prefixed``: split it at its line breaks and their
        prefixes in one pass (None: when its first line has a prefix)."""
        prefixes = PREFIXES
        if prefixed is None:
            prefix = prefixes.get(block[0])
            prefixed = prefix is not None and bool((m := prefix(block)) and m.end())
        if prefixed:
            # Only "\n" ends a piece here; a piece that holds a "\r" (a redraw, whose pieces
            # may carry prefixes of their own) is read as a block of its own.
            pieces = PREFIXED_LINE_BREAK.split(block)
        else:
            pieces = block.splitlines()
        redraws = self._redraws
        line_fn, row_fn, iter_fn = self._line, self._row, self._iter_line
        train_031, train = TRAIN_031, Train
        # Escape sequences never contain \r or \n: splitting first is safe, and lets a line
        # be recognised (a bar redrawn, a table row as rich writes it) before any stripping.
        # Only _line and failures.flush enter or leave a traceback: re-read the state after them.
        failures = self._failures
        plain = not failures.in_traceback and failures.pending is None
        max_raw = 4 * MAX_LINE
        for raw in pieces:
            if not raw:
                continue
            if prefixed and "\r" in raw:
                if raw.find("\r") < len(raw) - 1:
                    self._lines(raw, out, prefixed=False)
                    plain = not failures.in_traceback and failures.pending is None
                    continue
                raw = raw[:-1]  # the "\r" of a "\r\n"
                if not raw:
                    continue
            if len(raw) > max_raw and not failures.in_traceback:
                # No line mlx-lm prints is this long, even with its colour codes, and a cut
                # line could misread (a number cut short): skip it before any other work.
                failures.flush(out)
                plain = True
                continue
            if "\x1b" in raw:
                if raw in redraws:
                    continue  # a progress bar drawn again with the same count
                if plain:
                    # 0.32's table rows are most of its output: read them as rich writes them
                    # (a fixed set of colour codes), which is cheaper than stripping.
                    m = RICH_ROW.match(raw)
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
                if not failures.in_traceback:
                    failures.flush(out)
                    plain = True
                    continue
                line = line[:MAX_LINE]
            c = line[0]
            if c == "[" and plain and line.startswith("[WARNING]"):
                continue  # mlx-lm's warnings (long sequences): frequent, nothing to read
            # mlx-lm's own lines never start like a prefix: the test costs its frequent lines
            # nothing.
            prefix = prefixes.get(c)
            # Prefixes inside prefixes (docker's around a tool's own) all go, as the split does.
            while prefix is not None and (c != "[" or line[1:2].isdigit() or " (pid " in line):
                m = prefix(line)
                if not (m and (end := m.end())):
                    break
                line = line[end:]
                if not line:
                    break
                c = line[0]
                prefix = prefixes.get(c)
            if not line:
                continue
            if not plain:
                line_fn(line, out)
                plain = not failures.in_traceback and failures.pending is None
                continue
            # The frequent lines go straight to their reader; the rest through _line.
            if c == " ":
                row_fn(line, out)
            elif c == "I" and (m := train_031(line)) is not None:
                # The train report of 0.2x-0.31, most of its lines, read here: a call less.
                i, loss, lr, its, toks, trained, mem = m.groups()
                try:
                    it = int(i)
                    out.append(train(it, float(loss), float(lr), float(its), float(toks),
                                     int(trained), float(mem)))
                except ValueError:
                    iter_fn(line, out)  # not numbers: the other wordings
                    continue
                if it > self.last_iter:
                    self.last_iter = it
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
                plain = not failures.in_traceback and failures.pending is None

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
        failures = self._failures
        if failures.in_traceback:
            failures.traceback_line(line)
            return
        if failures.pending is not None:
            if failures.continues(line):
                return
            if not line.startswith(TRACEBACK):
                failures.flush(out)
        if not self._known_line(line, out):
            failure = explain_line(line)
            if failure is not None:
                failures.crash(failure, line, out)

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
                m = TQDM_COUNT.search(line)
                if m:
                    phase = "test" if self._testing else "val"
                    self._progress(phase, int(m.group(1)), int(m.group(2)), out)
                return True
        elif c == "T":
            if line.startswith(TRACEBACK):
                self._failures.start_traceback()
                return True
            if line.startswith("Test loss"):
                m = TEST.match(line)
                if m:
                    self._failures.last = None
                    out.append(Test(number(m.group(1)), number(m.group(2))))
                return True
            if line.startswith("Testing"):
                self._testing = True
                return True
        elif c == "S":
            if line.startswith("Starting training"):
                m = STARTING.match(line)
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
                out.append(Resume(checkpoint_iter(path), path))
                return True
        elif c == "[":
            if line.startswith("[WARNING]"):
                return True  # mlx-lm's own warnings (long sequences): frequent, never a crash
        elif c == "│" or c == "|":
            if "batch · iters" in line:
                m = HEADER_ITERS.search(line)
                if m:
                    self._start(int(m.group(1).replace(",", "")), out)
                return True
        return False

    def _start(self, total: int, out: List[Event]) -> None:
        self.total_iters = total
        self.last_iter = 0
        self.progress = None
        self._phase_done.clear()
        self._redraws.clear()
        self._testing = False
        self._failures.last = None
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
                saved = checkpoint_iter(name)
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
        m = BAR_COUNT.match(line, dot + 1)
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
            m = TRAIN_031(line)
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
        m = ITER_HEAD.match(line)
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
                fields[name] = number(value)
            except ValueError:
                continue
        return fields


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
