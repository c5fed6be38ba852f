"""``tunedeck train`` and ``tunedeck resume``: start or continue a run, detached or followed."""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from pathlib import Path
from typing import Optional

from ..errors import BadInput

TRAIN_EXAMPLES = """\
examples:
  tunedeck train tunedeck.toml                       train in the foreground (Ctrl-C stops gracefully)
  tunedeck train tunedeck.toml --detach              start and return; follow with `tunedeck runs`
  tunedeck train lora_config.yaml --run-dir runs/a   an mlx-lm YAML, as `mlx_lm.lora -c` takes it

The run directory holds the config, mlx-lm's log (train.log), events (metrics.jsonl), status and
checkpoints. The training process does not depend on this terminal: closing it never stops a run.
With ranks or hosts set (several processes or Macs, see docs/several-macs.md) rank 0 writes all
of that and each other rank writes its output to train.rank<N>.log."""

RESUME_EXAMPLES = """\
examples:
  tunedeck resume runs/demo-20260101-120000              continue from the latest checkpoint
  tunedeck resume runs/demo-... --checkpoint best        continue from the best by val loss
  tunedeck resume runs/demo-... --iters 2000             extend the run to 2000 iterations
  tunedeck resume runs/demo-... --checkpoint 10 --learning-rate 5e-4
                                                         a diverged run, from before it went wrong

Resume is exact: optimizer state, learning-rate schedule, data order and iteration numbers all
continue, so the result equals a run that never stopped. Later checkpoints are moved aside, never
overwritten. A run on several ranks resumes on as many ranks (ranks / hosts in its run.toml)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="start a training run from a tunedeck TOML or an mlx-lm YAML",
        description="Start a training run. CONFIG is a tunedeck.toml or an mlx-lm YAML config.",
        epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, metavar="CONFIG")
    p.add_argument("--run-dir", type=Path, help="run directory (default: ./runs/<name>-<timestamp>)")
    p.add_argument("--detach", action="store_true", help="start the run and return at once")
    p.set_defaults(handler=_train)

    p = subparsers.add_parser(
        "resume", help="continue a run exactly from a checkpoint",
        description="Continue RUN from its latest resumable checkpoint (or --checkpoint).",
        epilog=RESUME_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--checkpoint", metavar="ITER|best", help="which checkpoint (default: the latest)")
    p.add_argument("--iters", type=int, help="total iterations; larger than planned extends the run")
    p.add_argument("--learning-rate", type=float, metavar="LR",
                   help="continue with this learning rate instead of the checkpoint's (the "
                        "optimizer state and iteration count still carry on)")
    p.add_argument("--detach", action="store_true", help="start and return at once")
    p.set_defaults(handler=_resume)


def load_config_file(path: Path):
    from ..config import TrainConfig

    if not path.is_file():
        raise BadInput(f"{path}: config file not found")
    # Paths in a config file are relative to the file, not to the shell's directory.
    return TrainConfig.load(path).resolve_paths(path.resolve().parent)


def _train(args) -> int:
    from ..runs import start_run

    config = load_config_file(args.config)
    source = args.config.read_text() if args.config.suffix == ".toml" else None
    run, proc = start_run(config, run_dir=args.run_dir, source_text=source)
    return _after_start(run, proc, args.detach)


def _resume(args) -> int:
    from ..rundir import RunDirectory
    from ..runs import resume_run

    run = RunDirectory(args.run)
    if run.run_toml.exists():
        from ..config import TrainConfig
        from ..distributed import check_resume_world, layout_of

        # Refused before resume_run moves any later checkpoint aside.
        check_resume_world(run, layout_of(TrainConfig.from_toml(run.run_toml)))
    proc, checkpoint, total = resume_run(run, args.checkpoint, args.iters, args.learning_rate)
    rate = f" with learning_rate {args.learning_rate:g}" if args.learning_rate is not None else ""
    print(f"resuming {run.path} from checkpoint {checkpoint.iteration} to iteration {total}{rate}")
    return _after_start(run, proc, args.detach)


def _after_start(run, proc, detach: bool) -> int:
    if detach:
        print(f"started {run.path} (pid {proc.pid})")
        print(f"  follow: tunedeck metrics {run.path} --follow    stop: tunedeck stop {run.path}")
        return 0
    return follow(run, proc)


def follow(run, proc) -> int:
    """Show the log as it grows with a live status line; Ctrl-C stops the run gracefully."""
    from ..runs import stop_run
    from .status_line import StatusLine

    status = StatusLine(run)
    position = 0
    interrupted = False
    pause = ExitOrTimeout(proc)
    while True:
        try:
            position = _copy_new_log(run.train_log, position, status)
            status.refresh()
            if proc.poll() is not None and not run.is_locked():
                position = _copy_new_log(run.train_log, position, status, final=True)
                break
            pause(0.1)
        except KeyboardInterrupt:
            if interrupted:
                continue
            interrupted = True
            status.clear()
            print("\nstopping gracefully (the current step finishes first)...", file=sys.stderr)
            try:
                stop_run(run)
            except BadInput:
                pass
    pause.close()
    status.clear()
    return _report_end(run)


class ExitOrTimeout:
    """The follower's pause: ``timeout`` seconds, or less when the training process exits.

    The run's end is then noticed at once, not up to a pause later (on Linux, through a pidfd;
    elsewhere it is a plain sleep). Once the process is gone the pause is a sleep again, so a
    lock still held by someone else is polled, not spun on.
    """

    def __init__(self, proc) -> None:
        self.proc = proc
        self.fd: Optional[int] = None
        if hasattr(os, "pidfd_open"):
            try:
                self.fd = os.pidfd_open(proc.pid)
            except OSError:  # an old kernel, or the process is already gone
                self.fd = None

    def __call__(self, timeout: float) -> None:
        if self.fd is None or self.proc.poll() is not None:
            time.sleep(timeout)
            return
        select.select([self.fd], [], [], timeout)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _copy_new_log(path: Path, position: int, status, final: bool = False) -> int:
    """Copy what the log gained since ``position`` to stdout; return the new position.

    Into a file or a pipe (or with NO_COLOR set) the text goes without mlx-lm's colour codes,
    whole lines at a time so no escape sequence is cut in two, the last part once ``final``.
    A log truncated or replaced meanwhile is copied from its start (``read_appended``).
    """
    from ..file_tail import read_appended

    try:
        chunk, end = read_appended(path, position)
    except OSError:  # unreadable for now: tried again at the next look
        return position
    if chunk:
        status.clear()
    if chunk and _plain_output():
        if not final:
            whole = chunk[:chunk.rfind(b"\n") + 1]
            end -= len(chunk) - len(whole)
            chunk = whole
        from ..logparse import strip_ansi

        text = strip_ansi(chunk.decode("utf-8", errors="replace"))
        sys.stdout.write(text)
        sys.stdout.flush()
    elif chunk:
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    return end


def _plain_output() -> bool:
    return not sys.stdout.isatty() or bool(os.environ.get("NO_COLOR"))


def _report_end(run) -> int:
    from ..checkpoints import checkpoint_index

    state = run.state()
    checkpoints = checkpoint_index(run)
    resumable = [c for c in checkpoints if c.resumable]
    print(f"\nrun {state}: {run.path}", file=sys.stderr)
    if (run.adapters / "adapters.safetensors").exists():
        print(f"  saved: {run.adapters / 'adapters.safetensors'} (latest weights)", file=sys.stderr)
    if resumable:
        last = resumable[-1]
        print(f"  last checkpoint: {last.path.name} (iteration {last.iteration}, resumable)", file=sys.stderr)
        if state != "finished":
            print(f"  continue with: tunedeck resume {run.path}", file=sys.stderr)
    if state in ("failed", "interrupted"):
        from ..crash import run_failure

        failure = run_failure(run)
        if failure is not None:
            print(f"  error: {failure.one_line()}", file=sys.stderr)
    return 0 if state in ("finished", "stopped") else 1
