"""``tunedeck runs`` and ``tunedeck stop``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import BadInput
from ..eta import format_duration
from ..text import loss_text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "runs", help="list runs: state, progress, ranks, last loss, best val loss, ETA",
        description="List the runs under ROOT (default ./runs), oldest first, with the number of "
                    "ranks each trains on (1: one process). A run that failed "
                    "or was cut short gets a line under it: what it died of, and what to try. "
                    "A run with health findings gets a line with the newest: "
                    "iteration, severity, issue, evidence and advice.")
    p.add_argument("--root", type=Path, default=Path("runs"), help="where runs live (default ./runs)")
    p.add_argument("--json", action="store_true", help="one JSON object per run and line")
    p.set_defaults(handler=_runs)

    p = subparsers.add_parser(
        "stop", help="stop a run gracefully",
        description="Stop RUN between two training steps (or in the middle of a validation). "
                    "The latest weights are saved as adapters.safetensors; with --save a numbered, "
                    "resumable checkpoint is written at the current iteration too.")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--save", action="store_true", help="write a resumable checkpoint before stopping")
    p.add_argument("--after-checkpoint", action="store_true",
                   help="let the run continue to its next checkpoint, then stop")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    p.set_defaults(handler=_stop)


# A run in one of these states may have died of something worth naming.
_ENDED_BADLY = ("failed", "interrupted")


def _failure(s):
    """Why the run failed (core.crash.run_failure), for the runs that did."""
    from ..crash import run_failure
    from ..rundir import RunDirectory

    return run_failure(RunDirectory(s.path)) if s.state in _ENDED_BADLY else None


def _newest_finding(s):
    """The run's newest health finding (core.health, core.probes), or None."""
    from ..checkpoints import health_findings, run_events
    from ..rundir import RunDirectory

    found = health_findings(run_events(RunDirectory(s.path)))
    return found[-1] if found else None


def _world_size(s) -> int:
    """How many ranks the run trains on, as its supervisor recorded (1: one process)."""
    from ..distributed import recorded_world_size
    from ..rundir import RunDirectory

    return recorded_world_size(RunDirectory(s.path).read_status())


def _runs(args) -> int:
    from ..checkpoints import finding_line
    from ..runs import list_runs

    summaries = list_runs(args.root)
    if args.json:
        for s in summaries:
            record = s.to_json()
            record["world_size"] = _world_size(s)
            failure = _failure(s)
            if failure is not None:
                record["error"], record["advice"] = failure.cause, failure.advice or None
            finding = _newest_finding(s)
            record["health"] = None if finding is None else {
                k: v for k, v in finding.to_dict().items() if k != "kind"}
            print(json.dumps(record))
        return 0
    if not summaries:
        print(f"no runs under {args.root}")
        return 0
    header = (f"{'RUN':<32} {'STATE':<12} {'PROGRESS':>13} {'RANKS':>5} {'LOSS':>7} {'BEST VAL':>9} "
              f"{'ETA':>8}")
    print(header)
    for s in summaries:
        progress = f"{s.iteration}/{s.total_iters}" if s.total_iters else str(s.iteration)
        print(f"{s.name[:32]:<32} {s.state:<12} {progress:>13} {_world_size(s):>5} {loss_text(s.last_loss):>7} "
              f"{loss_text(s.best_val_loss):>9} {format_duration(s.eta_s):>8}")
        failure = _failure(s)
        if failure is not None:
            print(f"  {failure.one_line()}")
        finding = _newest_finding(s)
        if finding is not None:
            print(f"  {finding_line(finding)}")
    return 0


def _stop(args) -> int:
    from ..rundir import RunDirectory
    from ..runs import stop_run

    run = RunDirectory(args.run)
    if not run.exists():
        raise BadInput(f"{args.run}: not a run directory")
    start = time.monotonic()
    state = stop_run(run, save=args.save, after_checkpoint=args.after_checkpoint, timeout=args.timeout)
    if args.after_checkpoint:
        print(f"{run.path}: {state}")
    else:
        print(f"{run.path}: {state} after {time.monotonic() - start:.1f} s")
    return 0
