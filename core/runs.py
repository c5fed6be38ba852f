"""Starting, resuming, stopping and listing runs. The training itself happens in core.runner,
in a process of its own session, so nothing here (nor the UI) has to stay alive for a run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .checkpoints import Checkpoint, current_history, pick_checkpoint, run_events
from .errors import BadInput, WorkFailed
from .rundir import RunDirectory, find_runs, write_atomic
from .runner_process import spawn_runner

def default_run_dir(name: str, root: Path) -> Path:
    return root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir_free(run: RunDirectory) -> None:
    if run.is_locked():
        raise BadInput(f"{run.path}: a run is in progress in this directory")
    if run.path.exists() and any(run.path.iterdir()):
        raise BadInput(f"{run.path}: already exists and is not empty "
                       "(use `tunedeck resume` to continue a run, or pick another --run-dir)")


def supersede_after(run: RunDirectory, iteration: int) -> Optional[Path]:
    """Move checkpoints newer than ``iteration`` aside instead of letting a resume overwrite them."""
    later = [p for p in run.adapters.glob("[0-9]*_*") if p.name[:7].isdigit() and int(p.name[:7]) > iteration]
    if not later:
        return None
    keep = run.adapters / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
    keep.mkdir()
    for p in later:
        shutil.move(str(p), keep / p.name)
    return keep


def resume_run(run: RunDirectory, checkpoint: Optional[str] = None, iters: Optional[int] = None,
               learning_rate: Optional[float] = None) -> tuple[subprocess.Popen, Checkpoint, int]:
    """Continue ``run`` exactly from ``checkpoint``; ``learning_rate`` replaces the saved rate
    (the optimizer's moments and step count still carry on), e.g. half of it after a
    ``diverging`` finding. The runner reads it from status.json, where it stays on record."""
    if not run.exists():
        raise BadInput(f"{run.path}: not a run directory")
    if run.is_locked() and not _ends_soon(run):
        raise BadInput(f"{run.path}: the run is still going (stop it first)")
    if learning_rate is not None:
        _check_new_learning_rate(run, learning_rate)
    chosen = pick_checkpoint(run, checkpoint, resumable=True)
    total = iters if iters is not None else int(run.read_status().get("total_iters") or 0)
    if iters is not None and iters < 1:
        raise BadInput(f"--iters: must be at least 1 (got {iters})")
    if total <= chosen.iteration:
        raise BadInput(f"{run.path}: checkpoint {chosen.iteration} already reaches the planned "
                       f"{total} iterations; pass --iters N (N > {chosen.iteration}) to extend the run")
    from .config import TrainConfig
    from .distributed import check_resume_world, layout_of

    # Before supersede_after: a refused resume leaves the later checkpoints where they were.
    check_resume_world(run, layout_of(TrainConfig.from_toml(run.run_toml)))
    supersede_after(run, chosen.iteration)
    run.update_status(resume_learning_rate=learning_rate)  # None: the checkpoint's own rate
    proc = spawn_runner(run, "--resume-from", str(chosen.iteration), "--iters", str(total))
    return proc, chosen, total


def _ends_soon(run: RunDirectory, wait: float = 60.0) -> bool:
    """A run whose end is on record (its status says stopped, finished or failed) still holds
    its lock until its process has exited, which on a busy machine takes seconds: a resume asked
    for in that moment waits for it rather than calling the run "still going"."""
    from .events import END_STATES

    if run.read_status().get("state") not in END_STATES:
        return False
    deadline = time.monotonic() + wait
    while run.is_locked():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def resume_with_new_rate(run: RunDirectory, checkpoint: int,
                         learning_rate: float) -> tuple[subprocess.Popen, Checkpoint, int]:
    """The resume a ``diverging`` finding offers (core.health.DivergingOffer), once confirmed:
    a run still going is stopped first (it is only sitting at a uniform guess), then it
    continues from ``checkpoint`` with ``learning_rate``."""
    if run.is_locked():
        stop_run(run)
    return resume_run(run, str(checkpoint), learning_rate=learning_rate)


def _check_new_learning_rate(run: RunDirectory, learning_rate: float) -> None:
    import math

    from .config import TrainConfig

    if not math.isfinite(learning_rate) or learning_rate <= 0:
        raise BadInput(f"--learning-rate: must be a number above 0 (got {learning_rate:g})")
    schedule = TrainConfig.from_mlx_yaml(run.mlx_yaml).lr_schedule
    if schedule is not None and schedule.name:
        # mlx's optimizer sets the rate from the schedule before every step: a new rate would
        # be overwritten at once.
        raise BadInput(f"--learning-rate: {run.path} follows lr_schedule ({schedule.name}), "
                       f"not a single rate; start a new run with a lower one")


def stop_run(run: RunDirectory, save: bool = False, after_checkpoint: bool = False,
             timeout: float = 60.0) -> str:
    """Ask the training process to stop gracefully and wait for it. Returns the final state."""
    if not run.exists():
        raise BadInput(f"{run.path}: not a run directory")
    state = run.state()
    # A resumed run holds the lock a moment before its status says so.
    if state not in ("starting", "running") and not run.is_locked():
        raise BadInput(f"{run.path}: not running (state: {state})")
    pid = _training_pid(run)
    sig = signal.SIGUSR1 if after_checkpoint else signal.SIGUSR2 if save else signal.SIGTERM
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return run.state()
    if after_checkpoint:
        return "stopping after the next checkpoint"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not run.is_locked():
            return run.state()
        time.sleep(0.1)
    raise WorkFailed(f"{run.path}: still stopping after {timeout:.0f} s (it stops between steps; "
                     f"`kill -9 {pid}` ends it at once, losing work since the last checkpoint)")


def _training_pid(run: RunDirectory, wait: float = 10.0) -> int:
    """The pid of the process training in ``run``: the lock's holder, as the kernel reports it
    (the runner takes the lock before its first status write), else the status's. Waits a
    moment for a runner that has been started but holds no lock yet."""
    deadline = time.monotonic() + wait
    while True:
        holder = run.lock_holder()
        if holder:
            return holder
        pid = run.read_status().get("pid")
        if pid:
            return int(pid)
        if time.monotonic() >= deadline:
            raise WorkFailed(f"{run.path}: the training process has not started yet; try again")
        time.sleep(0.05)


@dataclass
class RunSummary:
    name: str
    path: str
    state: str
    iteration: int
    total_iters: int
    last_loss: Optional[float]
    best_val_loss: Optional[float]
    eta_s: Optional[float]
    started_at: Optional[float]
    error: Optional[str]

    def to_json(self) -> dict:
        return asdict(self)


def summarize(run: RunDirectory) -> RunSummary:
    from .eta import estimate_from_events

    status = run.read_status()
    events = run_events(run)
    val, train = current_history(events)
    state = run.state()
    iteration = max([int(status.get("iter") or 0), *train.keys(), *val.keys()] or [0])
    total = int(status.get("total_iters") or 0)
    eta = estimate_from_events(events, total) if state == "running" else None
    return RunSummary(
        name=run.name, path=str(run.path), state=state, iteration=iteration, total_iters=total,
        last_loss=train[max(train)] if train else None,
        best_val_loss=min(val.values()) if val else None,
        eta_s=eta, started_at=status.get("created_at"), error=status.get("error"))


def list_runs(root: Path) -> list[RunSummary]:
    return [summarize(r) for r in find_runs(root)]


def _check_data(config):
    """The config with its data where the runner will find it, or a refusal of a dataset mlx-lm
    would trip over mid-run, before any process starts."""
    if config.hf_dataset:
        _check_hf_datasets(config.hf_dataset)
        return config
    data_dir = Path(config.data)
    if not data_dir.is_dir():
        data_dir = _cached_hub_dataset(config.data)
    _check_data_dir(data_dir, config)
    return dataclasses.replace(config, data=str(data_dir))


def _check_data_dir(data_dir: Path, config) -> None:
    from .data.feature_keys import features_of
    from .data.validate import validate_file

    if not (data_dir / "train.jsonl").exists():
        raise BadInput(f"{data_dir}: no train.jsonl (mlx-lm reads train.jsonl, valid.jsonl, test.jsonl)")
    # The columns mlx-lm is told to read: a question/answer file with prompt_feature=question
    # and completion_feature=answer is as valid as a prompt/completion one.
    features = features_of(config)
    problems = []
    for split in ("train", "valid", "test"):
        path = data_dir / f"{split}.jsonl"
        if path.exists():
            problems += [str(p) for p in validate_file(path, features=features).problems if p.error]
    if problems:
        more = f" (and {len(problems) - 1} more; see `tunedeck data check {data_dir}`)" if len(problems) > 1 else ""
        raise BadInput(f"{problems[0]}{more}")


def _cached_hub_dataset(data: str) -> Path:
    """A Hub dataset id as mlx-lm reads it (train.jsonl & co.) from its snapshot in the local
    Hugging Face cache: runs never download (the runner works with HF_HUB_OFFLINE)."""
    from .models import hub_snapshot, looks_like_hub_id

    snapshot = hub_snapshot(data, "dataset")
    if snapshot is not None and (snapshot / "train.jsonl").is_file():
        return snapshot
    if snapshot is None and looks_like_hub_id(data):
        raise BadInput(f"{data}: not a local directory and not in the Hugging Face cache; tunedeck "
                       f"does not download datasets: fetch it once with `hf download --repo-type "
                       f"dataset {data}`, or give a directory with train.jsonl")
    if snapshot is not None:
        raise BadInput(f"{data}: its copy in the Hugging Face cache has no train.jsonl; for "
                       "datasets in other layouts use hf_dataset")
    raise BadInput(f"{data}: data directory not found")


def _check_hf_datasets(entries: list) -> None:
    """hf_dataset is read by the ``datasets`` package: it must be installed, and each path a
    local dataset or one the Hugging Face cache holds (no download happens during a run)."""
    import importlib.util

    from .models import hub_snapshot

    if importlib.util.find_spec("datasets") is None:
        raise BadInput("hf_dataset: needs the datasets package, which is not installed "
                       "(pip install datasets)")
    for i, entry in enumerate(entries):
        path = str(entry["path"])
        if Path(path).expanduser().exists() or hub_snapshot(path, "dataset") is not None:
            continue
        raise BadInput(f"hf_dataset[{i}].path: {path}: not a local dataset and not in the Hugging "
                       f"Face cache; fetch it once with `hf download --repo-type dataset {path}`")


def start_run(config, run_dir: Optional[Path] = None, root: Path = Path("runs"),
              source_text: Optional[str] = None) -> tuple[RunDirectory, subprocess.Popen]:
    """Check everything, write the run directory, and start training detached.

    ``config`` is a TrainConfig whose paths are already resolved; it is not changed (it may be
    the one a form shows and saves): the run's own copy gets the model's directory and the
    run's adapter path. ``source_text`` is the user's own TOML, kept verbatim in run.toml when
    given.
    """
    from .models import resolve_model

    problems = config.problems()
    if problems:
        raise BadInput(problems[0])
    run = RunDirectory(run_dir or default_run_dir(config.run_name, root))
    check_run_dir_free(run)
    model_dir = resolve_model(str(config.model))
    run_config = dataclasses.replace(_check_data(config), model=str(model_dir),
                                     adapter_path=str(run.adapters))
    total_iters = run_config.total_iters()
    from .distributed import check_hosts, layout_of

    layout = layout_of(run_config)
    if layout is not None:  # refused before anything is written, as any other bad config
        check_hosts(layout, [str(model_dir), str(run_config.data)])
    run.path.mkdir(parents=True, exist_ok=True)
    write_atomic(run.run_toml, source_text if source_text is not None else run_config.to_toml())
    write_atomic(run.mlx_yaml, run_config.to_mlx_yaml())
    write_atomic(run.command_txt,
                 run_config.to_command(str(run.mlx_yaml), total_iters=total_iters).text + "\n")
    run.update_status(state="starting", created_at=time.time(), total_iters=total_iters,
                      name=run_config.run_name, model=str(model_dir))
    proc = spawn_runner(run)
    return run, proc
