"""The training process: ``python -m tunedeck.core.runner RUN_DIR [--resume-from ITER] [--iters N]``.

Training is mlx-lm's own: its model loading, datasets, LoRA layers, optimizers, schedules, loss,
batching and its ``trainer.train`` loop, which prints mlx-lm's usual output into ``train.log``.
tunedeck adds, around that loop and without touching its maths:

* events in ``metrics.jsonl`` from mlx-lm's training callback (learning rate, peak memory…) and
  reporting to wandb / swanlab through mlx-lm's own reporting callbacks (core.run_record);
* exact resume: with every checkpoint the optimizer state, random key and counters are saved;
  the data order is a deterministic function of the seed and is replayed up to the checkpoint;
  iteration numbers continue globally, so checkpoint names never repeat (core.resumable_loop,
  core.resume_state);
* graceful stops (SIGTERM now, SIGUSR1 after the next checkpoint, SIGUSR2 save-then-stop) and
  early stopping on validation loss (core.training_session, which also explains a full disk
  with core.disk_space);
* a supervisor (here): the process that holds the run's lock forks the trainer and waits for it,
  so a trainer that dies without a word (the kernel's out-of-memory killer, a segfault, a Metal
  abort) still ends as ``failed`` with its cause in status.json and metrics.jsonl;
* several ranks (``ranks`` / ``hosts``, core.distributed): the supervisor starts one training
  process per rank (``--rank N``) instead of forking one; rank 0 records the run, the ranks agree
  on stops in a collective, and each reports its steps to the supervisor.

The supervisor imports no MLX and none of the trainer's modules: the trainer imports them after
the fork (core.training_session, core.training_setup).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .rundir import RUNNING_STATES, RunDirectory


def supervise(run: RunDirectory, trainer_pid: int) -> int:
    """Wait for the trainer; if it died without recording how, record it as failed, with the cause.

    Stop signals sent to this process are passed on, so the pid `tunedeck train` prints stops the
    run as the trainer's own does. This process imports no MLX: it costs a few MB.
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda signum, frame: _forward(trainer_pid, signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _, status = os.waitpid(trainer_pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and run.read_status().get("state") in RUNNING_STATES:
        record_failure(run, code)
    return code if code >= 0 else 128 - code


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def record_failure(run: RunDirectory, returncode: int) -> None:
    """The trainer is gone without a word of its own: explain it from its exit and its last lines."""
    from .crash import explain_exit

    try:
        with open(run.train_log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        tail = ""
    failure = explain_exit(returncode, tail, run_dir=run.path)
    if failure is None:
        message, advice = f"the training process exited with code {returncode}", None
    else:
        message, advice = failure.cause, failure.advice
    from .rank_supervisor import fail_run

    fail_run(run, message, advice, exit_code=returncode)


def supervise_ranks(run: RunDirectory, layout, argv: list[str]) -> int:
    """A run on several ranks: this process starts each one as a training process of its own
    and ends the run when one fails (core.rank_supervisor)."""
    from .rank_supervisor import RankSupervisor

    runner_args = [a for a in argv if a != str(run.path) and Path(a).absolute() != run.path]
    code = RankSupervisor(run, layout, runner_args, dict(os.environ)).run_all()
    if code == 0 and run.read_status().get("state") in RUNNING_STATES:
        # Every rank exited 0 but rank 0 recorded no end: it was killed in a way it could not see.
        record_failure(run, 1)
        return 1
    return code


def train_rank(run: RunDirectory, args) -> int:
    """One rank of a distributed run: the same training session, in mlx's group of ranks."""
    import mlx.core as mx

    from .distributed import load_layout

    layout = load_layout(run.path)
    if layout is None:
        print(f"[tunedeck] error: rank {args.rank} started in {run.path}, which has no ranks.json",
              flush=True)
        return 1
    group = mx.distributed.init(strict=True, backend=layout.backend)
    if group.size() != layout.world_size or group.rank() != args.rank:
        print(f"[tunedeck] error: rank {args.rank} joined a group of {group.size()} as rank "
              f"{group.rank()}, expected {layout.world_size}", flush=True)
        return 1
    if args.rank != 0:
        print(f"[tunedeck] rank {args.rank} of {group.size()} ({layout.backend}); rank 0 writes "
              f"the run's log, events and checkpoints", flush=True)
    from .training_session import TrainingSession

    return TrainingSession(run, args.resume_from, args.iters, rank=args.rank,
                           world_size=group.size()).execute()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.runner")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume-from", type=int, help="continue from this checkpoint iteration")
    parser.add_argument("--iters", type=int, help="total iterations (extends the plan when larger)")
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)  # started by the supervisor
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = RunDirectory(args.run_dir)
    if args.rank is not None:
        return train_rank(run, args)
    lock = run.acquire_lock()
    if lock is None:
        print(f"tunedeck: error: {run.path}: another process is training in this run directory",
              file=sys.stderr)
        return 2
    run.update_status(supervisor_pid=os.getpid())
    sys.stdout.flush()
    from .distributed import load_layout

    layout = load_layout(run.path)
    if layout is not None:
        return supervise_ranks(run, layout, argv if argv is not None else sys.argv[1:])
    trainer = os.fork()
    if trainer == 0:
        # The trainer. The lock stays with the supervisor (a POSIX lock is not inherited), which
        # outlives it, so "locked" means "this run is not over yet" until its end is on record.
        os.close(lock)
        from .training_session import TrainingSession

        exit_now(TrainingSession(run, args.resume_from, args.iters).execute())
    exit_now(supervise(run, trainer))
    return 0  # not reached


def exit_now(code: int) -> None:
    """End this process once its run is on record, without Python's clean-up of every module.

    The trainer has mlx-lm's imports loaded (transformers, wandb, MLX), and tearing those down
    took 0.5-1.5 s on 2 cores after the run had ended: wall time the user waits for and nothing
    needs, since status.json, metrics.jsonl and the checkpoints are written and closed by then.
    What a clean exit would still do is done here: the atexit handlers (wandb's and swanlab's
    finish their upload there) and flushing the output.
    """
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
