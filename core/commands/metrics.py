"""``tunedeck metrics PATH [--json] [--follow]``: a run's losses, speed and ETA, headless.

PATH is a run directory (its metrics.jsonl, or its train.log when there is none), any mlx-lm
log file (a metrics.jsonl works too), or ``-`` for standard input:
``mlx_lm.lora ... 2>&1 | tunedeck metrics - --follow``.
"""

from __future__ import annotations

import argparse
import os
import select
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple

from ..errors import BadInput
from ..eta import format_duration
from ..status_text import SEPARATOR
from ..text import loss_text

if TYPE_CHECKING:
    from ..events import Test, Train, Val

# How often a followed file is checked for new lines.
POLL_S = 0.2
# Output quiet for this long has said all it will for now: a crash held back for a line that
# could add to it is shown (a crashed process writes no more).
QUIET_S = 1.0
READ_BYTES = 1 << 16

EPILOG = """\
Without --json: a table (iteration, train loss, val loss, tok/s, ETA) with saves, test results
and errors in between (a crash in one line: its cause, then what to try), health findings in
between as "iter N  BAD diverging: evidence — advice" (a plain mlx-lm log has none recorded: they
are found as it is read, without the model's vocabulary), then a summary line. With --json: the events, one JSON object per line
(train events carry "eta_s" once an ETA is known).

--follow keeps reading as the run goes on. It ends when the run ends (an end event, or the run
directory's status.json no longer says running), at the end of standard input, or on Ctrl-C.

examples:
  tunedeck metrics runs/2024-06-01-demo            a run's history and ETA
  tunedeck metrics train.log --json                 events of any mlx_lm.lora log
  mlx_lm.lora ... 2>&1 | tunedeck metrics - -f      live table for a plain mlx-lm run"""

# (events, arrival time or None): arrival times only for lines that arrived while we watched.
Batch = Tuple[list, Optional[float]]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "metrics", help="losses, tok/s and ETA of a run, an mlx-lm log or a pipe",
        description="Print the training metrics of RUN_DIR, of an mlx_lm.lora log file, or of "
                    "standard input (-), as a table or as JSON events.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="RUN_DIR|LOG|-")
    p.add_argument("--json", action="store_true", help="one JSON event per line")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep reading until the run ends (Ctrl-C to leave)")
    p.set_defaults(handler=_metrics)


def _metrics(args) -> int:
    source = _open_source(args.path, args.follow)
    # A tunedeck run's metrics.jsonl carries the findings of the runner's monitor; any other
    # log gets a monitor of its own here.
    printer = _Printer(as_json=args.json, find_health=not _is_event_record(args.path))
    try:
        for events, arrival in source:
            printer.feed(events, arrival)
    except KeyboardInterrupt:
        pass  # leaving --follow: still print what we have
    if printer.error is None and args.path != "-" and Path(args.path).is_dir():
        printer.error = _run_failure(Path(args.path))
    printer.finish()
    return 0


def _run_failure(run_dir: Path) -> Optional[str]:
    """The cause of a run that ended badly without an error event (status.json, train.log)."""
    from ..crash import run_failure
    from ..rundir import RunDirectory

    run = RunDirectory(run_dir)
    if run.state() not in ("failed", "interrupted"):
        return None
    failure = run_failure(run)
    return failure.one_line() if failure is not None else None


# -- sources ---------------------------------------------------------------------------------


def _open_source(path: str, follow: bool) -> Iterator[Batch]:
    if path == "-":
        return _stdin_source()
    p = Path(path)
    if p.is_dir():
        if (p / "metrics.jsonl").exists():
            return _events_file_source(p / "metrics.jsonl", follow, run_dir=p)
        if (p / "train.log").exists():
            return _log_file_source(p / "train.log", follow, run_dir=p)
        if follow and (p / "status.json").exists():
            return _events_file_source(p / "metrics.jsonl", follow, run_dir=p)  # starting up
        raise BadInput(f"{path}: not a run directory (no metrics.jsonl or train.log in it)")
    if p.is_file():
        if _looks_like_events(p):
            return _events_file_source(p, follow, run_dir=None)
        return _log_file_source(p, follow, run_dir=None)
    raise BadInput(f"{path}: no such run directory or log file")


def _is_event_record(path: str) -> bool:
    """Whether ``path`` is read as a metrics.jsonl (as _open_source decides) rather than a log."""
    if path == "-":
        return False
    p = Path(path)
    if p.is_dir():
        return (p / "metrics.jsonl").exists() or not (p / "train.log").exists()
    return p.is_file() and _looks_like_events(p)


def _looks_like_events(path: Path) -> bool:
    """A metrics.jsonl given by its own path (its first character is "{")."""
    if path.suffix == ".jsonl":
        return True
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    return head.startswith(b'{"kind"')


def _run_is_over(run_dir: Optional[Path]) -> bool:
    if run_dir is None or not (run_dir / "status.json").exists():
        return False
    from ..rundir import RUNNING_STATES, RunDirectory

    return RunDirectory(run_dir).state() not in RUNNING_STATES


def _events_file_source(path: Path, follow: bool, run_dir: Optional[Path]) -> Iterator[Batch]:
    from ..events import End, EventFileReader

    reader = EventFileReader(path)
    events = reader.read_new()
    yield events, None
    if not follow or any(isinstance(e, End) for e in events):
        return
    while True:
        over = _run_is_over(run_dir)  # asked before reading, so the last lines are read after
        time.sleep(POLL_S)
        events = reader.read_new()
        yield events, (time.time() if events else None)
        if over or any(isinstance(e, End) for e in events):
            return


def _log_file_source(path: Path, follow: bool, run_dir: Optional[Path]) -> Iterator[Batch]:
    from ..events import End
    from ..file_tail import FileTail
    from ..logparse import LogParser

    parser = LogParser()
    tail = FileTail(path)
    yield _parsed(parser, tail.read_lines()), None
    quiet_since = time.monotonic()
    while follow:
        over = _run_is_over(run_dir)
        time.sleep(POLL_S)
        lines = tail.read_lines()
        if lines:
            events, quiet_since = _parsed(parser, lines), time.monotonic()
        else:
            events = parser.idle() if time.monotonic() - quiet_since >= QUIET_S else []
        yield events, (time.time() if lines else None)
        if over or any(isinstance(e, End) for e in events):
            break
    # The tail holds back a last line without its newline (it may still be being written); at
    # the end it counts, as it does in a pipe: a process killed mid-line leaves one.
    events = parser.feed(tail.held_back())
    yield events + parser.close(), None


def _parsed(parser, lines: List[str]) -> list:
    return parser.feed("".join(line + "\n" for line in lines)) if lines else []


def _stdin_source() -> Iterator[Batch]:
    from ..logparse import LogParser

    fd = sys.stdin.fileno()
    # A pipe is live output: its arrival times are timing. A redirected file arrives at once.
    live = not stat.S_ISREG(os.fstat(fd).st_mode)
    parser = LogParser()
    while True:
        if live:
            ready, _, _ = select.select([fd], [], [], QUIET_S)
            if not ready:
                yield parser.idle(), None  # lets the table show a row or a crash it was holding
                continue
        data = os.read(fd, READ_BYTES)
        if not data:
            break
        yield parser.feed(data), (time.time() if live else None)
    yield parser.close(), None


# -- output ----------------------------------------------------------------------------------


def _explained(error) -> str:
    """An error event in one line: its cause, then what to try."""
    from ..crash import recorded

    return recorded(error.message, error.advice).one_line()


class _Printer:
    """Feeds the ETA estimator and prints JSON events or table rows as they come."""

    def __init__(self, as_json: bool, out=None, find_health: bool = False) -> None:
        from ..eta import EtaEstimator
        from ..health import HealthMonitor

        self.as_json = as_json
        self.out = out or sys.stdout
        self.eta = EtaEstimator()
        self.header_done = False
        # A val row waits for the train report of the same iteration.
        self.pending_val: Optional[tuple[Val, Optional[float]]] = None
        self.last_train: Optional[Train] = None
        self.best_val: Optional[Val] = None
        self.test: Optional[Test] = None
        self.error: Optional[str] = None
        self.end: Optional[str] = None
        self.monitor = HealthMonitor() if find_health else None
        self.findings: list = []

    def feed(self, events: list, arrival: Optional[float]) -> None:
        from ..events import Progress, Train

        lines: List[str] = []
        if self.monitor is not None:
            events = [found for event in events for found in (event, *self.monitor.observe(event))]
        for event in events:
            self.eta.observe(event, arrival)
            if isinstance(event, Progress):
                continue  # live display only; not part of the printed vocabulary
            left = self._seconds_left(arrival)
            if isinstance(event, Train) and left is not None:
                event.eta_s = round(left, 1)
            self._remember(event)
            if self.as_json:
                lines.append(event.to_json())
            else:
                self._table(event, left, lines)
        if not events and not self.as_json:
            self._flush_val(lines)
        self._write(lines)

    def _seconds_left(self, now: Optional[float]) -> Optional[float]:
        result = self.eta.estimate(now if now is not None else time.time())
        return None if result is None else result[0]

    def _remember(self, event) -> None:
        from ..events import End, Error, Health, Resume, Start, Test, Train, Val

        if isinstance(event, (Start, Resume)):
            self.error = None  # a new attempt: an earlier crash is not how this one ends
        if isinstance(event, Resume):
            cut = event.iter or 0  # as in core.checkpoints.health_findings
            self.findings = [h for h in self.findings if h.iter is None or h.iter <= cut]
        if isinstance(event, Health):
            self.findings.append(event)
        elif isinstance(event, Train):
            self.last_train = event
        elif isinstance(event, Val):
            if self.best_val is None or event.loss < self.best_val.loss:
                self.best_val = event
        elif isinstance(event, Test):
            self.test = event
        elif isinstance(event, Error):
            self.error = _explained(event)
        elif isinstance(event, End):
            self.end = event.state

    def _table(self, event, left: Optional[float], lines: List[str]) -> None:
        from ..checkpoints import finding_line
        from ..events import End, Error, Health, Resume, Save, Start, Test, Train, Val

        if not self.header_done:
            lines.append(f"{'iter':>6}  {'train loss':>10}  {'val loss':>8}  {'tok/s':>8}  {'ETA':>7}")
            self.header_done = True
        if isinstance(event, Val):
            self._flush_val(lines)
            self.pending_val = (event, left)
            return
        if isinstance(event, Train):
            val = self.pending_val[0] if self.pending_val else None
            if val is not None and val.iter != event.iter:
                self._flush_val(lines)
                val = None
            self.pending_val = None
            tok = "-" if event.tokens_per_sec is None else f"{event.tokens_per_sec:,.0f}"
            lines.append(f"{event.iter:>6}  {loss_text(event.loss):>10}  "
                         f"{loss_text(val.loss if val else None):>8}  {tok:>8}  "
                         f"{format_duration(event.eta_s):>7}")
            return
        self._flush_val(lines)
        if isinstance(event, Save):
            lines.append(f"{'':>6}  saved {event.file}")
        elif isinstance(event, Test):
            lines.append(f"{'':>6}  test loss {loss_text(event.loss)}, ppl {event.ppl:.3f}")
        elif isinstance(event, Resume):
            at = f" (iteration {event.iter})" if event.iter is not None else ""
            lines.append(f"{'':>6}  resumed from {event.source}{at}")
        elif isinstance(event, Start):
            lines.append(f"{'':>6}  start: {event.total_iters:,} iterations"
                         if event.total_iters else f"{'':>6}  start")
        elif isinstance(event, Error):
            lines.append(f"{'':>6}  error: {_explained(event)}")
        elif isinstance(event, Health):
            lines.append(f"{'':>6}  {finding_line(event)}")
        elif isinstance(event, End):
            lines.append(f"{'':>6}  run {event.state}")

    def _flush_val(self, lines: List[str]) -> None:
        if self.pending_val is None:
            return
        val, left = self.pending_val
        self.pending_val = None
        lines.append(f"{val.iter:>6}  {'-':>10}  {loss_text(val.loss):>8}  {'-':>8}  "
                     f"{format_duration(left):>7}")

    def _write(self, lines: List[str]) -> None:
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def finish(self) -> None:
        lines: List[str] = []
        if not self.as_json:
            self._flush_val(lines)
            lines.append(self._summary())
        self._write(lines)

    def _summary(self) -> str:
        parts = []
        total = self.eta.total_iters
        position = self.eta.position
        if total:
            parts.append(f"iteration {position:,}/{total:,}")
        elif position:
            parts.append(f"iteration {position:,}")
        parts += self._losses()
        if self.findings:
            newest = self.findings[-1]
            more = f", {len(self.findings)} findings" if len(self.findings) > 1 else ""
            parts.append(f"health {newest.severity} {newest.issue} "
                         f"(iteration {newest.iter if newest.iter is not None else '-'}{more})")
        if self.error is not None:
            parts.append(f"failed: {self.error}")
        elif self.end is not None and self.end != "finished":
            parts.append(f"run {self.end}")
        else:
            left = self._seconds_left(None)
            if left is not None and left <= 0:
                parts.append("ETA done")
            else:
                parts.append(f"ETA {format_duration(left)}")
        if len(parts) == 1 and not position:
            return "no training metrics found"
        return SEPARATOR.join(parts)

    def _losses(self) -> List[str]:
        """The last train loss, the best val loss and where it was, the test loss: those known."""
        best_at = f" (iteration {self.best_val.iter})" if self.best_val is not None else ""
        losses = (("last loss", self.last_train, ""), ("best val", self.best_val, best_at),
                  ("test loss", self.test, ""))
        return [f"{label} {loss_text(event.loss)}{where}" for label, event, where in losses
                if event is not None]
