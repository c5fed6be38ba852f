"""Starting the training process: detached from the terminal, in a session of its own, with
everything it prints going to the run's train.log."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .errors import BadInput, WorkFailed
from .rundir import RunDirectory

STARTUP_TIMEOUT_S = 30.0


def _runner_env() -> dict:
    from .blas import fast_blas_env

    env = fast_blas_env(dict(os.environ))  # the machine's OpenBLAS or MKL, not MLX's reference BLAS
    env["PYTHONUNBUFFERED"] = "1"  # mlx-lm's plain prints are block-buffered on a pipe otherwise
    env["HF_HUB_OFFLINE"] = "1"    # a run never waits on a network it does not have
    env.pop("FORCE_COLOR", None)   # it would switch mlx-lm to TTY redraws in the log
    return env


def prepare_ranks(run: RunDirectory, runner_args: tuple) -> None:
    """A run on several ranks gets its layout (core.distributed) in ranks.json, after the checks
    that must pass before any rank starts; a one-process run gets none. Refusals are BadInput."""
    from .config import TrainConfig
    from .distributed import (LAYOUT_FILE, check_hosts, check_resume_world, layout_of,
                              save_layout)

    if not run.run_toml.exists():
        return
    config = TrainConfig.from_toml(run.run_toml)
    layout = layout_of(config)
    if "--resume-from" in runner_args:
        check_resume_world(run, layout)
    if layout is None:
        (run.path / LAYOUT_FILE).unlink(missing_ok=True)
        return
    if "--resume-from" in runner_args:  # start_run checked the hosts of a new run already
        planned = TrainConfig.from_mlx_yaml(run.mlx_yaml)
        check_hosts(layout, [str(planned.model), str(planned.data)])
    save_layout(run.path, layout)


def spawn_runner(run: RunDirectory, *runner_args: str) -> subprocess.Popen:
    """Start the training process detached from this terminal and wait until it holds the lock."""
    run.path.mkdir(parents=True, exist_ok=True)
    try:
        prepare_ranks(run, runner_args)
    except BadInput as exc:
        if "--resume-from" not in runner_args:
            # start_run wrote the run directory already: on record as failed, not "interrupted".
            run.update_status(state="failed", error=str(exc), ended_at=time.time())
        raise
    before = run.read_status().get("started_at")
    with open(run.train_log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunedeck.core.runner", str(run.path), *runner_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=_runner_env(), cwd=str(run.path))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        status = run.read_status()
        # The runner's supervisor (proc) forks the trainer, which records its start.
        if status.get("supervisor_pid") == proc.pid and status.get("started_at") != before:
            return proc
        if proc.poll() is not None:
            tail = run.train_log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise WorkFailed(f"the training process exited at once: {tail[0]}")
        time.sleep(0.05)
    raise WorkFailed(f"the training process did not start within {STARTUP_TIMEOUT_S:.0f} s "
                     f"(see {run.train_log})")
