"""Why a training process died, in one line, with what to try.

One explanation for every place that shows a crash: the log parser (a line of mlx-lm's output
or a traceback's last line becomes an ``error`` event with this cause and advice), the runner's
supervisor (a process's exit code and the end of what it printed), and from them ``tunedeck
runs``, ``tunedeck metrics`` and the Training pane.

What it knows, most frequent first: Metal's out-of-memory abort (``libc++abi: terminating due to
uncaught exception of type std::runtime_error: [METAL] Command buffer execution failed:
Insufficient Memory ...``, the usual way a run dies on a Mac), the other ``[METAL]`` and
``[metal::malloc]`` errors, a full disk, the reports of a shell or of Python's faulthandler for a
process killed by a signal (``zsh: killed``, ``Segmentation fault: 11``, ``Bus error``...), and
exit codes (a negative code, or 128 + N from a shell, is signal N: SIGKILL is most often the
system's out-of-memory killer).

Nothing heavy is imported (the standard library, and core's events and parser when a whole log
is read): the parser imports this, and headless commands must start fast.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .text import size_text


@dataclass(frozen=True)
class Failure:
    cause: str      # one line: "out of memory (Metal: Insufficient Memory)"
    advice: str     # what to try: "smaller batch_size or max_seq_length, grad_checkpoint, ..."

    def one_line(self) -> str:
        return f"{self.cause} — {self.advice}" if self.advice else self.cause


OOM_ADVICE = "smaller batch_size or max_seq_length, grad_checkpoint, fewer num_layers"
# Without the run at hand the command names its argument; given the run, explain_exit(run_dir=)
# and run_failure put it in.
RESUME = "resume from the last complete checkpoint with `tunedeck resume RUN`"
DISK_ADVICE = f"free space on the disk that holds the run, then {RESUME}"
NATIVE_ADVICE = f"a fault in MLX or a library it loads: update mlx and mlx-lm, then {RESUME}"
PYTHON_ADVICE = "the traceback before it in the log shows where it happened"

# The cause of an uncaught C++ exception whose message is not known yet (Linux prints it on the
# next line, "  what():  ..."); the log parser completes it from that line.
UNCAUGHT = "aborted on an uncaught C++ exception"

_SIGNAL_FAILURES: dict[int, Failure] = {
    signal.SIGKILL: Failure("killed by SIGKILL, most likely by the system's out-of-memory killer",
                            OOM_ADVICE),
    signal.SIGSEGV: Failure("crashed with a segmentation fault (SIGSEGV)", NATIVE_ADVICE),
    signal.SIGBUS: Failure(
        "crashed with a bus error (SIGBUS)",
        "a memory-mapped file went away or was cut short (model files on a disk that was "
        f"disconnected or is full, or changed while training): keep them in place, then {RESUME}"),
    signal.SIGABRT: Failure("aborted (SIGABRT)",
                            f"the lines before it in the log say why; then {RESUME}"),
    signal.SIGILL: Failure(
        "crashed on an illegal instruction (SIGILL)",
        "this Python or MLX build does not fit the CPU (on a Mac: an x86 Python under Rosetta); "
        "use a native arm64 Python"),
    signal.SIGTERM: Failure("stopped from outside (SIGTERM)", f"to go on, {RESUME}"),
    signal.SIGINT: Failure("interrupted (Ctrl-C)", f"to go on, {RESUME}"),
}


def signal_failure(signum: int) -> Failure:
    """A process ended by signal ``signum``."""
    known = _SIGNAL_FAILURES.get(signum)
    if known is not None:
        return known
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return Failure(f"killed by {name}", f"to go on, {RESUME}")


ABORTED = signal_failure(signal.SIGABRT)

# -- one line ------------------------------------------------------------------------------------

# Anything worth a closer look contains one of these; most lines are dismissed by them.
# Substring tests: a regular expression alternating them is ten times slower on a long line.
_HINTS = ("METAL", "metal::", "cuda", "CUDA", "fault", "us error", "illed", "bort", "Errno",
          "No space left", "quota", "bad_alloc", "out of memory", "MemoryError", "llegal",
          "erminat", "uncaught", "Fatal Python", "KeyboardInterrupt")


def _hint(line: str) -> bool:
    for word in _HINTS:
        if word in line:
            return True
    return False


_METAL = re.compile(r"\[METAL\]\s*(.*)").search
_METAL_CODE = re.compile(r"\s*\(?\b[0-9a-fA-F]{8}:kIOGPU\w*\)?")
_MALLOC_TOO_BIG = re.compile(
    r"\[metal::malloc\] Attempting to allocate (\d+) bytes which is greater than the maximum "
    r"allowed buffer size of (\d+) bytes").search
_MALLOC_LIMIT = re.compile(r"\[metal::malloc\] Resource limit \((\d+)\) exceeded").search
_CUDA_OOM = re.compile(r"\[cuda[\w:]*\].*(?:out of memory|[Ff]ailed to allocate)|"
                       r"cudaErrorMemoryAllocation|CUDA_ERROR_OUT_OF_MEMORY").search
_LIBCXXABI = re.compile(r"libc\+\+abi: terminating(?: due to uncaught exception of type "
                        r"(\S+?)(?::\s+(.*)|:?\s*$))?").match
# libstdc++ prints the message on a line of its own: the two lines joined by a space read as one.
_TERMINATE = re.compile(
    r"terminate called after throwing an instance of '([^']+)'(?:\s+what\(\):\s*(.*))?").match
_FATAL_PYTHON = re.compile(r"Fatal Python error: (.*)").match
# Signal reports. A shell's: bash ("Killed", "Segmentation fault (core dumped)", "bash: line 1:
# 4242 Killed  python ...", "[1]+  Killed  python ..."), zsh ("zsh: killed  python ...",
# "[1]  + 4242 abort  python"), macOS sh ("Segmentation fault: 11", "Abort trap: 6").
_SIGNAL_NAMES = {
    "segmentation fault": signal.SIGSEGV, "bus error": signal.SIGBUS, "killed": signal.SIGKILL,
    "abort": signal.SIGABRT, "abort trap": signal.SIGABRT, "aborted": signal.SIGABRT,
    "illegal instruction": signal.SIGILL, "illegal hardware instruction": signal.SIGILL,
    "terminated": signal.SIGTERM,
}
_WORDS = (r"(segmentation fault|bus error|killed|abort trap|aborted|abort"
          r"|illegal (?:hardware )?instruction|terminated)")
_SHELL_REPORT = re.compile(
    r"(?:[\w./-]*sh: (?:line \d+: )?(?:\d+ )?|\[\d+\]\s*[+-]?\s*(?:\d+\s+)?)" + _WORDS + r"\b",
    re.IGNORECASE).match
_BARE_REPORT = re.compile(
    r"(Segmentation fault|Bus error|Killed|Abort trap|Aborted|Illegal instruction|Terminated)"
    r"(?:: \d+)?(?: \(core dumped\))?\s*$").match
_ENOSPC = re.compile(r"\[Errno 28\]|No space left on device").search
_EDQUOT = re.compile(r"\[Errno 122\]|Disk quota exceeded").search
_MEMORY = re.compile(r"(?:^|\W)(?:MemoryError|std::bad_alloc)\b").search
_KEYBOARD = re.compile(r"(?:^|\W)KeyboardInterrupt\b").search


def _metal(text: str) -> Failure:
    """``[METAL] ...`` errors: Metal's status, named as Metal names it, without its hex code."""
    detail = _METAL_CODE.sub("", text.replace("Command buffer execution failed:", "")).strip(" .")
    if "Insufficient Memory" in detail or "OutOfMemory" in text:
        return Failure("out of memory (Metal: Insufficient Memory)", OOM_ADVICE)
    if "Impacting Interactivity" in detail or "ImpactingInteractivity" in text:
        return Failure(
            "macOS stopped the GPU work to keep the display responsive (Metal: Impacting "
            "Interactivity)",
            f"shorter steps (smaller batch_size or max_seq_length), or train with the display "
            f"asleep; then {RESUME}")
    if "Timeout" in detail:
        return Failure("a GPU step ran too long (Metal: GPU Timeout)",
                       f"shorter steps: smaller batch_size or max_seq_length, grad_checkpoint; "
                       f"then {RESUME}")
    if "victim" in detail or "Discarded" in detail:
        return Failure("the GPU dropped the work after another program's GPU error (Metal: "
                       "Discarded)", f"close other GPU-heavy programs, then {RESUME}")
    return Failure(f"GPU error (Metal: {detail[:120]})",
                   f"{RESUME}; if it comes back at the same place, smaller batch_size or "
                   f"max_seq_length")


def _uncaught(kind: str, message: str) -> Failure:
    """An uncaught C++ exception: its message says more than its type, when it is known."""
    known = explain_line(message) if message else None
    if known is not None:
        return known
    what = f"{kind}: {message}" if kind and message else kind or message
    return Failure(f"{UNCAUGHT} ({what[:200]})" if what else UNCAUGHT, NATIVE_ADVICE)


def explain_line(line: str) -> Optional[Failure]:
    """The failure one line of output reports (ANSI already stripped), or None.

    A line that names a failure well enough to say what to try: a Metal error, an out-of-memory
    or full-disk exception, a native abort, a shell's or faulthandler's signal report.
    An exception it does not know (``KeyError: 'messages'``) is None: the caller keeps the line.
    """
    if not _hint(line):
        return None
    line = line.strip()
    m = _LIBCXXABI(line) or _TERMINATE(line)
    if m:
        return _uncaught((m.group(1) or "").strip(), (m.group(2) or "").strip())
    m = _METAL(line)
    if m:
        return _metal(m.group(1))
    m = _MALLOC_TOO_BIG(line)
    if m:
        return Failure(f"out of memory: one array needs {size_text(int(m.group(1)))}, more than Metal's "
                       f"largest buffer ({size_text(int(m.group(2)))})",
                       "smaller batch_size or max_seq_length")
    m = _MALLOC_LIMIT(line)
    if m:
        return Failure(f"too many GPU buffers (Metal: resource limit {m.group(1)} exceeded)",
                       f"a lower clear_cache_threshold, then {RESUME}")
    if _CUDA_OOM(line):
        return Failure("out of memory (CUDA)", OOM_ADVICE)
    if _ENOSPC(line):
        return Failure("disk full (No space left on device)", DISK_ADVICE)
    if _EDQUOT(line):
        return Failure("disk quota exceeded",
                       f"free space within your quota on the disk that holds the run, then {RESUME}")
    m = _FATAL_PYTHON(line)
    if m:
        what = m.group(1).strip()
        named = _SIGNAL_NAMES.get(what.lower())
        if named is not None:
            return signal_failure(named)
        return Failure(f"Python crashed ({what[:200]})", NATIVE_ADVICE)
    m = _SHELL_REPORT(line) or _BARE_REPORT(line)
    if m:
        return signal_failure(_SIGNAL_NAMES[m.group(1).lower()])
    if _MEMORY(line):
        return Failure("out of memory", OOM_ADVICE)
    if _KEYBOARD(line):
        return signal_failure(signal.SIGINT)
    if "out of memory" in line.lower() and ("rror" in line or "failed" in line.lower()):
        return Failure("out of memory", OOM_ADVICE)
    return None


# -- a process's exit ----------------------------------------------------------------------------

def _signal_of(returncode: int) -> Optional[int]:
    """The signal that ended a process: negative codes from Popen, 128 + N from a shell."""
    if returncode < 0:
        return -returncode
    if 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def _for_run(failure: Failure, run_dir: Path) -> Failure:
    """The failure with the run's own resume command in its advice."""
    return Failure(failure.cause,
                   failure.advice.replace("`tunedeck resume RUN`", f"`tunedeck resume {run_dir}`"))


def recorded(message: str, advice: Optional[str] = None) -> Failure:
    """An error as it was recorded (an error event, status.json's ``error``), as a Failure.

    A record without advice that names a known failure (``RuntimeError: [METAL] ...``) gets the
    cause and advice explain_line gives it; one that already says what to try is kept as it is.
    """
    if advice or " — " in message:
        return Failure(message, advice or "")
    known = explain_line(message)
    return known if known is not None else Failure(message, "")


def explain_exit(returncode: int, log_tail: str,
                 run_dir: Union[str, os.PathLike, None] = None) -> Optional[Failure]:
    """Why a process that exited with ``returncode`` failed, or None if it did not (code 0).

    ``log_tail`` is the end of what the process printed: a Metal abort, a known exception or a
    full disk named there is more precise than the exit code (only what comes after the last
    start of training counts: train.log holds earlier attempts too). ``run_dir``, when given,
    puts the run's own ``tunedeck resume`` command in the advice.
    """
    if returncode == 0:
        return None
    from .logparse import parse_text  # the parser reads tracebacks; crash.py explains lines

    last = _last_error(parse_text(log_tail or ""))
    signum = _signal_of(returncode)
    if last is not None and last.advice:
        failure = Failure(last.message, last.advice)
    elif signum is not None:
        failure = signal_failure(signum)
    elif last is not None:
        failure = Failure(last.message, PYTHON_ADVICE)
    else:
        said = [line.strip() for line in (log_tail or "").splitlines() if line.strip()]
        from .logparse import strip_ansi

        tail = strip_ansi(said[-1])[:200] if said else ""
        failure = Failure(f"exited with code {returncode}" + (f" after: {tail}" if tail else ""),
                          "the end of the log shows what it did last")
    return _for_run(failure, Path(run_dir)) if run_dir is not None else failure


# -- a run directory -----------------------------------------------------------------------------

# How much of the end of train.log is read for a cause nothing else recorded.
LOG_TAIL_BYTES = 64 * 1024


def _last_error(events: list):
    """The last error event since the last start (a resume starts again: earlier ones are past)."""
    from .events import Error, Resume, Start

    last = None
    for event in events:
        if isinstance(event, (Start, Resume)):
            last = None
        elif isinstance(event, Error):
            last = event
    return last


def run_failure(run) -> Optional[Failure]:
    """Why the run in ``run`` (a RunDirectory) ended badly, from what its directory holds.

    status.json's ``error`` first (the runner and its supervisor record the cause there), then
    the last error event of metrics.jsonl, then the end of train.log (a run whose process died
    before anything was recorded still printed its crash). None when none of them says.
    """
    from .events import read_events
    from .logparse import parse_text

    status = run.read_status()
    if status.get("error"):
        return _for_run(recorded(str(status["error"]), status.get("advice")), run.path)
    try:
        error = _last_error(read_events(run.metrics_jsonl)) if run.metrics_jsonl.exists() else None
    except OSError:
        error = None
    if error is None:
        try:
            with open(run.train_log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
                error = _last_error(parse_text(f.read()))
        except OSError:
            return None
    return _for_run(recorded(error.message, error.advice), run.path) if error is not None else None
