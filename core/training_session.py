"""One rank's training, around mlx-lm's own loop and without touching its maths: stops (signals,
early stopping, the ranks' agreement), checkpoints with their resume state, the test set, and
the run's end on record, including its failures.

With gradient accumulation the partly accumulated gradient lives inside mlx-lm's loop and cannot be
saved, so resumable checkpoints fall on accumulation boundaries: a ``save_every`` that lands inside
an accumulation step still gets mlx-lm's weights file ("weights only"), and the resumable checkpoint
is written at the next boundary; ``stop --save`` waits for that boundary too.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import time
import traceback
from typing import Optional, cast

from . import events as ev
from .disk_space import disk_full, disk_full_report, low_disk_warning, remove_torn_checkpoint
from .checkpoint_checks import CheckpointChecks
from .resumable_loop import DeterministicBatches, StopRequested, global_iterations, reseed
from .resume_state import ResumeState, adapter_file, save_optimizer
from .run_record import MonitoredEvents, NoEvents, StatusWriter, training_callback
from .rundir import RunDirectory, atomic_path
from .training_setup import load_for_training, read_early_stopping, read_mlx_args

STOP_NOW, STOP_AFTER_CHECKPOINT, SAVE_AND_STOP, EARLY_STOP = "now", "after-checkpoint", "save", "early"

# Stop requests from the weakest to the strongest: ranks that disagree take the strongest.
STOP_ORDER = (None, STOP_AFTER_CHECKPOINT, SAVE_AND_STOP, EARLY_STOP, STOP_NOW)


class TrainingSession:
    """A run's training on this rank (rank 0 alone records it): ``execute()`` and its exit code."""

    def __init__(self, run: RunDirectory, resume_from: Optional[int], total_iters: Optional[int],
                 rank: int = 0, world_size: int = 1):
        self.run = run
        self.completed = 0
        self.resume_from = resume_from
        self.args = read_mlx_args(run, total_iters)
        self.patience, self.min_delta = read_early_stopping(run)
        # Rank 0 owns the run directory: events, status, checkpoints and resume state.
        self.rank, self.world_size = rank, world_size
        self.records = rank == 0
        self.events = (MonitoredEvents(ev.EventWriter(run.metrics_jsonl), self.health_monitor())
                       if self.records else NoEvents())
        self.heartbeat = None
        if world_size > 1:
            from .rank_supervisor import Heartbeat

            self.heartbeat = Heartbeat()
        self.requested: Optional[str] = None  # a signal's stop, until the ranks agree on it
        self.stop_mode: Optional[str] = None
        self.last_checkpoint: Optional[int] = None
        self.tokens_offset = 0
        self.trained_tokens = 0
        self.status_written_at = -math.inf  # time.monotonic() of the last report's status write
        self.status_writer = StatusWriter(run)
        self.best_val = math.inf
        self.evals_since_best = 0
        self.checkpoint_due = False  # mlx-lm saved mid-accumulation; write one at the boundary
        self.batches: Optional[DeterministicBatches] = None  # set once training starts
        self.peak_rss_gb = 0.0
        self.answer_checks = CheckpointChecks.for_run(run)  # answer_checks in the form; off by default

    def health_monitor(self):
        """The run-health monitor (core.health), caught up on the run's record when resuming."""
        from .health import HealthMonitor, model_vocab_size

        monitor = HealthMonitor(vocab_size=model_vocab_size(self.args["model"]),
                                val_batches=self.args.get("val_batches"))
        if self.resume_from is not None and self.run.metrics_jsonl.exists():
            for past in ev.read_events(self.run.metrics_jsonl):
                monitor.observe(past)  # its findings are on record already
        return monitor

    # -- signals ----------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def request(mode):
            def handler(signum, frame):
                # The strongest request wins: "now" beats "save" beats "after checkpoint".
                order = [STOP_AFTER_CHECKPOINT, SAVE_AND_STOP, STOP_NOW]
                current = self.stop_mode if self.world_size == 1 else self.requested
                if current not in order or order.index(mode) > order.index(current):
                    if self.world_size == 1:
                        self.stop_mode = mode
                    else:
                        self.requested = mode  # every rank must stop at the same step
                    print(f"[tunedeck] stop requested ({mode})", flush=True)
            return handler

        signal.signal(signal.SIGTERM, request(STOP_NOW))
        signal.signal(signal.SIGINT, request(STOP_NOW))
        signal.signal(signal.SIGUSR1, request(STOP_AFTER_CHECKPOINT))
        signal.signal(signal.SIGUSR2, request(SAVE_AND_STOP))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal never stops a run

    def agree_on_stop(self) -> None:
        """All ranks take the strongest stop any of them was asked for, at the same point.

        Ranks step together: one that stopped alone would leave the others waiting for it in the
        next gradient average. A signal reaches the ranks at slightly different moments, so each
        keeps its request aside until this small collective (one integer, once a step and once a
        validation batch) makes it everyone's.
        """
        import mlx.core as mx

        mine = max(STOP_ORDER.index(self.requested), STOP_ORDER.index(self.stop_mode))
        agreed = cast(int, mx.distributed.all_max(mx.array(mine), stream=mx.cpu).item())
        self.stop_mode = STOP_ORDER[agreed]

    def should_stop(self, during_validation: bool = False, iteration: Optional[int] = None) -> bool:
        if during_validation:
            if self.heartbeat is not None:  # several ranks
                self.agree_on_stop()
                self.heartbeat.beat(self.batches.last_yielded if self.batches else 0)
            return self.stop_mode == STOP_NOW
        if self.stop_mode == SAVE_AND_STOP:
            # A save-then-stop waits for the accumulation boundary, where its checkpoint is written.
            return iteration is None or self.on_boundary(iteration)
        return self.stop_mode in (STOP_NOW, EARLY_STOP)

    # -- checkpoints -------------------------------------------------------------------------
    def save_resume_state(self, iteration: int) -> None:
        if not self.records:
            # Rank 0 saves; the others only restart the random stream where it does.
            self.last_checkpoint = iteration
            reseed(self.args["seed"], iteration)
            return
        adapters = self.run.adapters
        save_optimizer(self.optimizer, adapters, iteration)
        ResumeState(
            iteration=iteration,
            trained_tokens=self.trained_tokens,
            adapter_bytes=adapter_file(adapters, iteration).stat().st_size,
        ).save(adapters)
        self.last_checkpoint = iteration
        reseed(self.args["seed"], iteration)
        self.events.append(ev.Save(iter=iteration, file=adapter_file(adapters, iteration).name))
        self.status(iter=iteration, last_checkpoint=iteration)
        self.answer_checks.checkpoint_saved(iteration)  # its files are all written now

    def save_checkpoint_now(self, iteration: int) -> None:
        """A numbered checkpoint at an iteration mlx-lm did not save at (stop --save, the end)."""
        import mlx.core as mx
        from mlx.utils import tree_flatten
        from mlx_lm.cli_ui import rprint

        final = adapter_file(self.run.adapters, iteration)
        if self.records:
            with atomic_path(final, ".safetensors") as tmp:
                mx.save_safetensors(str(tmp), dict(tree_flatten(self.model.trainable_parameters())))
            rprint(f"  save  {final.name}")
        self.save_resume_state(iteration)

    def on_boundary(self, iteration: int) -> bool:
        """After this step no gradient is waiting to be applied: a checkpoint here resumes exactly."""
        return iteration % self.args["grad_accumulation_steps"] == 0

    def on_step_done(self, iteration: int) -> None:
        if self.heartbeat is not None:  # several ranks
            self.heartbeat.beat(iteration)
            self.agree_on_stop()
        saved_by_mlx = iteration % self.args["save_every"] == 0
        if saved_by_mlx and not self.on_boundary(iteration):
            # mlx-lm wrote the weights mid-accumulation: weights only; resumable at the boundary.
            self.events.append(ev.Save(iter=iteration, file=adapter_file(self.run.adapters, iteration).name))
            self.checkpoint_due = True
            return
        if saved_by_mlx:
            self.save_resume_state(iteration)
        elif self.on_boundary(iteration) and (self.checkpoint_due or self.stop_mode == SAVE_AND_STOP):
            self.save_checkpoint_now(iteration)
        else:
            return
        self.checkpoint_due = False
        if self.stop_mode == STOP_AFTER_CHECKPOINT:
            self.stop_mode = STOP_NOW

    # -- early stopping (the recorder reports each validation) -------------------------------
    def note_validation(self, iteration: int, loss: float) -> None:
        if self.patience is None:
            return
        if loss < self.best_val - self.min_delta:
            self.best_val, self.evals_since_best = loss, 0
            return
        self.evals_since_best += 1
        if self.evals_since_best >= self.patience and self.stop_mode is None:
            print(f"[tunedeck] early stopping at iteration {iteration}: no val loss improvement "
                  f"over {self.best_val:.3f} in {self.patience} evaluations", flush=True)
            self.stop_mode = EARLY_STOP

    # -- the run ------------------------------------------------------------------------------
    def build(self) -> Optional[ResumeState]:
        loaded = load_for_training(self.args, self.run, self.resume_from, self.records)
        self.model, self.optimizer = loaded.model, loaded.optimizer
        self.train_set, self.valid_set, self.test_set = loaded.train_set, loaded.valid_set, loaded.test_set
        if loaded.resume is not None:
            self.tokens_offset = self.trained_tokens = loaded.resume.trained_tokens
            self.last_checkpoint = loaded.resume.iteration
        return loaded.resume

    def train(self, first_iteration: int) -> None:
        from mlx_lm.tuner.datasets import CacheDataset
        from mlx_lm.tuner.trainer import TrainingArgs, train

        args = self.args
        training_args = TrainingArgs(
            batch_size=args["batch_size"], iters=args["iters"], val_batches=args["val_batches"],
            steps_per_report=args["steps_per_report"], steps_per_eval=args["steps_per_eval"],
            steps_per_save=args["save_every"], adapter_file=self.run.adapters / "adapters.safetensors",
            max_seq_length=args["max_seq_length"], grad_checkpoint=args["grad_checkpoint"],
            grad_accumulation_steps=args["grad_accumulation_steps"],
            clear_cache_threshold=args.get("clear_cache_threshold") or 0,
        )
        batches = self.batches = DeterministicBatches(args["seed"], first_iteration, self.on_step_done,
                                                      self.should_stop)
        try:
            with global_iterations(first_iteration):
                train(model=self.model, optimizer=self.optimizer,
                      train_dataset=CacheDataset(self.train_set),
                      val_dataset=CacheDataset(self.valid_set), args=training_args,
                      iterate_batches=batches, training_callback=training_callback(self))
            # Every batch handed out was trained on; the last step is settled here because
            # train() never asks for a batch after it.
            self.completed = batches.last_yielded
        except StopRequested:
            # Validation runs before the step of its iteration: that step never happened.
            self.completed = batches.last_yielded - 1
            self.save_final_weights()
        last = self.completed
        if last <= (self.last_checkpoint or 0):
            return
        if not self.on_boundary(last):
            if last % args["save_every"] == 0:  # mlx-lm's last save, mid-accumulation
                self.events.append(ev.Save(iter=last, file=adapter_file(self.run.adapters, last).name))
        elif last % args["save_every"] == 0:
            self.save_resume_state(last)
        elif last == args["iters"] or self.checkpoint_due:
            # A numbered checkpoint at the end too, so the run can be extended exactly.
            self.save_checkpoint_now(last)

    def test(self) -> None:
        from mlx_lm.cli_ui import rprint
        from mlx_lm.tuner.datasets import CacheDataset
        from mlx_lm.tuner.trainer import evaluate

        args = self.args
        rprint("Testing")
        batches = DeterministicBatches(args["seed"], 1, lambda i: None, self.test_batch_done)
        loss = evaluate(model=self.model, dataset=CacheDataset(self.test_set),
                        batch_size=args["batch_size"], num_batches=args["test_batches"],
                        max_seq_length=args["max_seq_length"], iterate_batches=batches)
        ppl = math.exp(loss)
        rprint(f"Test loss {loss:.3f}, Test ppl {ppl:.3f}.")
        self.events.append(ev.Test(loss=loss, ppl=ppl))

    def test_batch_done(self, **_) -> bool:
        """The test set is never stopped part way; with several ranks each batch is a heartbeat."""
        if self.heartbeat is not None:
            self.heartbeat.beat(self.completed)
        return False

    def execute(self) -> int:
        self.install_signal_handlers()
        now = time.time()
        self.status(state="running", pid=os.getpid(), started_at=now,
                    total_iters=self.args["iters"], ended_at=None, error=None)
        try:
            resume = self.build()
            first = resume.iteration + 1 if resume else 1
            if resume:
                self.events.append(ev.Resume(
                    iter=resume.iteration, source=str(adapter_file(self.run.adapters, resume.iteration)),
                    learning_rate=self.run.read_status().get("resume_learning_rate")))
            self.events.append(ev.Start(total_iters=self.args["iters"]))
            self.status(total_iters=self.args["iters"])
            self.warn_if_disk_too_small(first)
            self.train(first)
            finished = self.finished()
            if finished and self.args.get("test"):
                self.test()
        except Exception as exc:
            return self.fail_disk_full() if disk_full(exc) else self.fail(exc)
        # A finished run is not reported so before its last answer check has ended.
        self.answer_checks.close(wait=finished, give_up=lambda: self.stop_mode == STOP_NOW)
        state = "finished" if finished else "stopped"
        extra = {"reason": "early_stopping"} if self.stop_mode == EARLY_STOP else {}
        self.events.append(ev.End(state=state))
        self.status(state=state, ended_at=time.time(), iter=self.completed, **extra)
        print(f"[tunedeck] run {state} at iteration {self.completed}"
              + (f"; last checkpoint {self.last_checkpoint}" if self.last_checkpoint else ""), flush=True)
        return 0

    def status(self, **changes) -> None:
        """status.json is rank 0's to write; on record when this returns."""
        if self.records:
            self.status_writer.now(**changes)

    def finished(self) -> bool:
        """Did the run end by itself? All its iterations, or early stopping, whatever was asked.

        A stop after the next checkpoint that came too late (no checkpoint before the last
        iteration) is a run that finished, not one that was stopped.
        """
        return self.completed >= self.args["iters"] or self.stop_mode in (None, EARLY_STOP)

    def fail(self, exc: BaseException) -> int:
        from .crash import recorded

        traceback.print_exc()
        # A Metal or memory error raised in Python gets its cause and what to try, as a crash does.
        failure = recorded(f"{type(exc).__name__}: {exc}")
        self.events.append(ev.Error(message=failure.cause, advice=failure.advice or None))
        self.events.append(ev.End(state="failed"))
        self.status(state="failed", error=failure.one_line(), ended_at=time.time())
        return 1

    def fail_disk_full(self) -> int:
        """A full disk: one line that says where, how much is left and what still resumes.

        The torn files of the checkpoint being written go first: that also frees the room the
        record of the failure needs.
        """
        if not self.records:
            return self.fail(OSError(errno.ENOSPC, "no space left on this rank's disk"))
        remove_torn_checkpoint(self.run.adapters,
                               self.batches.last_yielded if self.batches is not None else None)
        message, resume = disk_full_report(self.run.path, self.last_checkpoint)
        print(f"[tunedeck] error: {message}; {resume}", flush=True)
        for record in (lambda: self.events.append(ev.Error(message=message, advice=resume)),
                       lambda: self.events.append(ev.End(state="failed")),
                       lambda: self.status_writer.now(state="failed", error=f"{message}; {resume}",
                                                      ended_at=time.time())):
            try:
                record()
            except OSError:
                pass  # not even a line fits: status.json still tells "interrupted"
        return 1

    def warn_if_disk_too_small(self, first: int) -> None:
        """Before training: will the checkpoints still to come fit on the disk?"""
        from mlx.utils import tree_reduce

        weights = tree_reduce(lambda total, v: total + v.nbytes, self.model.trainable_parameters(), 0)
        warning = low_disk_warning(self.run.path, weights, self.args["optimizer"], self.args["save_every"],
                                   first, self.args["iters"])
        if warning is None:
            return
        evidence, advice = warning
        print(f"[tunedeck] warning: {evidence}; {advice}", flush=True)
        self.events.append(ev.Health(iter=first, issue="low_disk", severity="warn",
                                     evidence=evidence, advice=advice))

    def save_final_weights(self) -> None:
        """What train() does after its loop, for a stop that came in the middle of a validation."""
        import mlx.core as mx
        from mlx.utils import tree_flatten

        if not self.records:
            return
        mx.save_safetensors(str(self.run.adapters / "adapters.safetensors"),
                            dict(tree_flatten(self.model.trainable_parameters())))

