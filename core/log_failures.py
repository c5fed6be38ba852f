"""How a log says its process failed, read line by line for the log parser (core.logparse).

A Python traceback becomes one ``error`` event whose message is the final exception line (the
last one of a chain), also when a Markdown copy lost its indentation. A native crash becomes an
``error`` event too: a Metal abort (``libc++abi: terminating due to uncaught exception ...
[METAL] ... Insufficient Memory``), ``terminate called ...`` with its ``what():`` line, a shell's
or faulthandler's report of a signal (``zsh: killed``, ``Segmentation fault: 11``). The cause and
what to try come from core.crash, which knows these failures.
"""

from __future__ import annotations

import re
from typing import List, Optional

from .crash import ABORTED, UNCAUGHT, explain_line
from .events import Error, Event
from .log_patterns import MAX_LINE

# Exception messages can embed whole inputs; the event keeps a readable first part.
MAX_MESSAGE = 1000
# A traceback without an exception line this long is not one any more.
MAX_TRACEBACK_LINES = 1000
TRACEBACK = "Traceback (most recent call last):"

# A traceback's exception line once Markdown removed the indentation of its frames:
# ``ValueError: ...``, ``huggingface_hub.errors.HFValidationError: ...``, ``KeyboardInterrupt``.
_EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?::|$)").match
_CHAIN_MARKERS = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)


class FailureReader:
    """The failure a log is telling, between the parser's lines.

    ``in_traceback``: inside a traceback's frames, every line is this reader's. ``pending``: an
    error held back for a line that could still add to it (a chained exception, a ``what():``
    line); ``flush`` hands it over. ``last``: the latest failure since the last start or test
    line, so its echoes (the shell's "abort", the same crash again) are not new errors.
    """

    def __init__(self) -> None:
        self.in_traceback = False
        self._flat_traceback = False  # its frames lost their indentation (a Markdown copy)
        self._traceback_lines = 0
        self.pending: Optional[Error] = None
        self._native = False  # the pending error is a native crash (a signal report may follow)
        self._native_line = ""  # the line that reported it
        self.last: Optional[Error] = None

    def start_traceback(self) -> None:
        self.in_traceback, self._flat_traceback = True, False
        self._traceback_lines = 0

    def traceback_line(self, line: str) -> None:
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
                self.in_traceback = False
            return
        exception = line.strip()[:MAX_MESSAGE]
        failure = explain_line(exception)
        self.pending = (Error(failure.cause, failure.advice) if failure is not None
                        else Error(exception))
        self._native = False
        self.last = self.pending
        self.in_traceback = False

    def continues(self, line: str) -> bool:
        """Does ``line`` belong to the pending error (a chain marker, a native crash's details)?"""
        if line.startswith(_CHAIN_MARKERS):
            return True
        return self._native and self._native_continues(line)

    def crash(self, failure, line: str, out: List[Event]) -> None:
        """A native crash or a signal report: held one line, since its details may follow."""
        last = self.last
        if last is not None and (failure is ABORTED or last.message == failure.cause):
            return  # the shell's "abort" after an explained abort, or the same crash again
        self.flush(out)
        self.pending = self.last = Error(failure.cause, failure.advice)
        self._native, self._native_line = True, line

    def _native_continues(self, line: str) -> bool:
        """A line that completes or echoes the pending native crash (True), or another (False)."""
        pending = self.pending
        assert pending is not None  # called only while a native crash is pending
        if line.lstrip().startswith("what():") and self._native_line:
            # libstdc++'s "terminate called after throwing ..." gives the message on this line.
            failure = explain_line(f"{self._native_line} {line.strip()}"[:MAX_LINE])
            if failure is not None:
                self.pending = self.last = Error(failure.cause, failure.advice)
            return True
        failure = explain_line(line)
        if failure is None:
            return False
        if failure is ABORTED or failure.cause == pending.message:
            return True  # the abort that follows an uncaught exception, reported again
        if pending.message.startswith(UNCAUGHT):
            # The exception's message on a line of its own (libc++abi wraps a long one).
            self.pending = self.last = Error(failure.cause, failure.advice)
            return True
        return False

    def flush(self, out: List[Event]) -> None:
        if self.pending is not None:
            out.append(self.pending)
            self.pending = None
            self._native = False
