"""The checkpoint index of a run: what each numbered checkpoint is worth and whether it resumes."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .adapters import FINAL_WEIGHTS, AdapterRef, checkpoint_iteration, resolve_adapter
from .errors import BadInput
from .events import Event, Health, Resume, Train, Val, read_events
from .resume_state import load_state
from .rundir import RUNNING_STATES, RunDirectory


@dataclass
class Checkpoint:
    iteration: int
    path: Path
    saved_at: float
    size_bytes: int
    val_loss: Optional[float]      # measured at this very iteration, or None
    val_iter: Optional[int]
    train_loss: Optional[float]    # the nearest train report at or before it
    resumable: bool                # exact-resume state present and consistent
    best: bool = False
    # "ok", or the severity ("warn"/"bad") of an answer check's finding at this iteration
    health: str = "ok"
    health_reason: Optional[str] = None   # that finding's issue and evidence

    @property
    def health_label(self) -> str:
        """The health column in words: "ok", or "bad: degenerate: …"."""
        return self.health if self.health_reason is None else f"{self.health}: {self.health_reason}"


def current_history(events: list[Event]) -> tuple[dict[int, float], dict[int, float]]:
    """Val and train losses by iteration, as the run stands now.

    A resume from an earlier checkpoint makes everything logged after that checkpoint history
    that no longer leads to the current weights, so it is dropped.
    """
    val: dict[int, float] = {}
    train: dict[int, float] = {}
    for event in events:
        if isinstance(event, Resume):
            cut = event.iter or 0
            val = {i: v for i, v in val.items() if i <= cut}
            train = {i: v for i, v in train.items() if i <= cut}
        elif isinstance(event, Val):
            val[event.iter] = event.loss
        elif isinstance(event, Train):
            train[event.iter] = event.loss
    return val, train


# Findings of the answer checks (core.probes): about the weights saved at their iteration.
CHECKPOINT_ISSUES = ("degenerate", "forgetting")
SEVERITY_RANK = {"ok": 0, "warn": 1, "bad": 2}


def finding_line(finding: Health) -> str:
    """A health finding in one line: ``iter N  BAD diverging: evidence — advice``."""
    where = "-" if finding.iter is None else finding.iter
    line = f"iter {where}  {finding.severity.upper()} {finding.issue}: {finding.evidence}"
    return f"{line} — {finding.advice}" if finding.advice else line


def health_findings(events: list[Event]) -> list[Health]:
    """The run's health findings as it stands now: those logged after a resume's checkpoint
    are about weights the run no longer leads to, so they are dropped, as in current_history."""
    found: list[Health] = []
    for event in events:
        if isinstance(event, Resume):
            cut = event.iter or 0
            found = [h for h in found if h.iter is None or h.iter <= cut]
        elif isinstance(event, Health):
            found.append(event)
    return found


def checkpoint_health(findings: list[Health], iteration: int) -> tuple[str, Optional[str]]:
    """The worst answer-check finding about the checkpoint at ``iteration``: (severity, reason)."""
    worst: Optional[Health] = None
    for h in findings:
        if h.iter == iteration and h.issue in CHECKPOINT_ISSUES and (
                worst is None or SEVERITY_RANK.get(h.severity, 0) > SEVERITY_RANK.get(worst.severity, 0)):
            worst = h
    if worst is None:
        return "ok", None
    return worst.severity, f"{worst.issue}: {worst.evidence}"


def run_events(run: RunDirectory) -> list[Event]:
    return read_events(run.metrics_jsonl) if run.metrics_jsonl.exists() else []


def _at_or_before(series: dict[int, float], iteration: int) -> tuple[Optional[int], Optional[float]]:
    keys = sorted(series)
    i = bisect.bisect_right(keys, iteration)
    return (keys[i - 1], series[keys[i - 1]]) if i else (None, None)


def checkpoint_index(run: RunDirectory) -> list[Checkpoint]:
    """Every numbered checkpoint of the run, oldest first, the best by val loss marked.

    A checkpoint whose answers were found degenerate is never the best, whatever its val loss:
    a model that answers only end-of-text tokens is no one's pick.
    """
    if not run.adapters.is_dir():
        return []
    events = run_events(run)
    val, train = current_history(events)
    findings = health_findings(events)
    checkpoints = []
    for path in run.adapters.glob("*_adapters.safetensors"):
        iteration = checkpoint_iteration(path)
        if iteration is None:
            continue
        stat = path.stat()
        # Only a validation at this iteration measured these weights: an earlier one
        # belongs to other weights and would make a checkpoint look better or worse than it is.
        val_loss = val.get(iteration)
        val_iter = iteration if val_loss is not None else None
        _, train_loss = _at_or_before(train, iteration)
        health, reason = checkpoint_health(findings, iteration)
        checkpoints.append(Checkpoint(
            iteration=iteration, path=path, saved_at=stat.st_mtime, size_bytes=stat.st_size,
            val_loss=val_loss, val_iter=val_iter, train_loss=train_loss,
            resumable=load_state(run.adapters, iteration) is not None,
            health=health, health_reason=reason))
    checkpoints.sort(key=lambda c: c.iteration)
    degenerate = {h.iter for h in findings if h.issue == "degenerate"}
    scored = [c for c in checkpoints if c.val_loss is not None and c.iteration not in degenerate]
    if scored:
        min(scored, key=lambda c: (c.val_loss, c.iteration)).best = True
    return checkpoints


def pick_checkpoint(run: RunDirectory, spec: Optional[str], resumable: bool = False) -> Checkpoint:
    """``spec`` is an iteration number, ``best``, or None for the latest (resumable) one."""
    checkpoints = checkpoint_index(run)
    candidates = [c for c in checkpoints if c.resumable] if resumable else checkpoints
    what = "resumable checkpoint" if resumable else "checkpoint"
    if not candidates:
        raise BadInput(f"{run.path}: no {what} yet")
    if spec is None:
        return candidates[-1]
    if spec == "best":
        best = [c for c in checkpoints if c.best]
        if not best:
            raise BadInput(f"{run.path}: no checkpoint has a validation loss, so none is 'best'")
        if resumable and not best[0].resumable:
            raise BadInput(f"{run.path}: the best checkpoint ({best[0].iteration}) has no resume state")
        return best[0]
    try:
        iteration = int(spec)
    except ValueError:
        raise BadInput(f"--checkpoint: expected an iteration number or 'best' (got {spec!r})") from None
    for c in candidates:
        if c.iteration == iteration:
            return c
    have = ", ".join(str(c.iteration) for c in candidates)
    raise BadInput(f"{run.path}: no {what} at iteration {iteration} (have: {have})")


def pick_adapter(run: RunDirectory, spec: Optional[str]) -> tuple[AdapterRef, Optional[Checkpoint]]:
    """The adapter ``spec`` names in ``run``: an iteration, ``best``, ``final`` (the run's
    ``adapters.safetensors``), or None for the latest numbered checkpoint (else the final weights)."""
    if spec == "final" or (spec is None and not checkpoint_index(run)):
        if not (run.adapters / FINAL_WEIGHTS).exists():
            raise BadInput(f"{run.path}: no checkpoint yet")
        return resolve_adapter(run.adapters), None
    # While a run trains, the newest checkpoint file may still be being written; one with its
    # resume state beside it is complete (the state is written last).
    training = spec is None and run.state() in RUNNING_STATES and any(c.resumable for c in checkpoint_index(run))
    checkpoint = pick_checkpoint(run, spec, resumable=training)
    return resolve_adapter(checkpoint.path), checkpoint


def delete_checkpoint(run: RunDirectory, iteration: int) -> None:
    """Remove one numbered checkpoint with its resume state.

    The resume record goes first, so a kill half-way never leaves a checkpoint that looks
    resumable without its weights.
    """
    from .probes import answers_file
    from .resume_state import adapter_file, optimizer_file, state_file

    for path in (state_file(run.adapters, iteration), optimizer_file(run.adapters, iteration),
                 adapter_file(run.adapters, iteration), answers_file(run.adapters, iteration)):
        path.unlink(missing_ok=True)


@dataclass
class ModelChoice:
    """What ``tunedeck export`` and ``tunedeck serve`` take: a run's checkpoint on its base model,
    or a model as it is."""

    model_dir: Path
    run: Optional[RunDirectory] = None
    adapter: Optional[AdapterRef] = None
    checkpoint: Optional[Checkpoint] = None   # None for a run's final weights
    args: Optional[dict] = None               # the run's mlx-lm arguments

    @property
    def label(self) -> str:
        """The checkpoint in a word: its iteration, "final", or "model" (no adapter)."""
        if self.run is None:
            return "model"
        return str(self.checkpoint.iteration) if self.checkpoint else "final"


def run_or_model(spec: str | Path, checkpoint: Optional[str]) -> ModelChoice:
    from .models import resolve_model
    from .training_setup import read_mlx_args

    run = RunDirectory(spec)
    if run.exists():
        adapter, chosen = pick_adapter(run, checkpoint)
        args = read_mlx_args(run, None)
        return ModelChoice(resolve_model(str(args["model"])), run, adapter, chosen, args)
    if checkpoint is not None:
        raise BadInput(f"{spec}: not a run directory, so it has no --checkpoint")
    if str(spec) != "demo" and not (Path(spec) / "config.json").is_file():
        raise BadInput(f"{spec}: neither a run directory nor a model directory")
    return ModelChoice(resolve_model(str(spec)))
