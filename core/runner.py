"""The training process: ``python -m tunedeck.core.runner RUN_DIR [--resume-from ITER] [--iters N]``.

Training is mlx-lm's own: its model loading, datasets, LoRA layers, optimizers, schedules, loss,
batching and its ``trainer.train`` loop, which prints mlx-lm's usual output into ``train.log``.
tunedeck adds, around that loop and without touching its maths:

* events in ``metrics.jsonl`` from mlx-lm's training callback (learning rate, peak memory…);
* exact resume: with every checkpoint the optimizer state, random key and counters are saved;
  the data order is a deterministic function of the seed and is replayed up to the checkpoint;
  iteration numbers continue globally, so checkpoint names never repeat;
* graceful stops (SIGTERM now, SIGUSR1 after the next checkpoint, SIGUSR2 save-then-stop) and
  early stopping on validation loss;
* reporting to wandb / swanlab through mlx-lm's own reporting callbacks, next to tunedeck's recorder;
* a supervisor: the process that holds the run's lock forks the trainer and waits for it, so a
  trainer that dies without a word (the kernel's out-of-memory killer, a segfault, a Metal abort)
  still ends as ``failed`` with its cause in status.json and metrics.jsonl;
* several ranks (``ranks`` / ``hosts``, core.distributed): the supervisor starts one training
  process per rank (``--rank N``) instead of forking one; rank 0 records the run, the ranks agree
  on stops in a collective, and each reports its steps to the supervisor.

With gradient accumulation the partly accumulated gradient lives inside mlx-lm's loop and cannot be
saved, so resumable checkpoints fall on accumulation boundaries: a ``save_every`` that lands inside
an accumulation step still gets mlx-lm's weights file ("weights only"), and the resumable checkpoint
is written at the next boundary; ``stop --save`` waits for that boundary too.
"""

from __future__ import annotations

import argparse
import builtins
import errno
import inspect
import math
import os
import shutil
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, cast

from .resume_state import (ResumeState, adapter_file, load_state, restore_optimizer,
                           save_optimizer)
from . import events as ev
from .checkpoint_checks import CheckpointChecks
from .rundir import RUNNING_STATES, RunDirectory, atomic_path

STOP_NOW, STOP_AFTER_CHECKPOINT, SAVE_AND_STOP, EARLY_STOP = "now", "after-checkpoint", "save", "early"


def reseed(seed: int, iteration: int) -> None:
    """Restart MLX's random stream (LoRA dropout) at a checkpoint.

    MLX offers no way to set its random key to a saved value, so instead both a straight run and
    a resumed one reseed from (seed, iteration) at every checkpoint: their streams then agree.
    """
    import mlx.core as mx

    mx.random.seed((seed * 1_000_003 + iteration) % 2**32)


def peak_memory_gb(mlx_peak_gb: float) -> Optional[float]:
    """mlx-lm's peak memory on a GPU; on the CPU backend, where MLX counts only a few of its own
    buffers (a run that uses gigabytes showed "peak 0.00 GB"), the process's own peak instead."""
    import mlx.core as mx

    if mx.default_device().type == mx.DeviceType.gpu:
        return mlx_peak_gb
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return peak / (1e9 if sys.platform == "darwin" else 1e6) or None


class StopRequested(Exception):
    """Raised inside a validation pass so a stop does not wait for minutes of evaluation."""


def read_mlx_args(run: RunDirectory, total_iters: Optional[int]) -> dict:
    """The arguments mlx-lm's own ``mlx_lm.lora -c mlx_lm.yaml`` would train with."""
    from .config import TrainConfig

    args = TrainConfig.from_mlx_yaml(run.mlx_yaml).to_mlx_args()
    args["adapter_path"] = str(run.adapters)
    if total_iters is not None:
        args["iters"] = total_iters
    return args


def load_splits(ns, tokenizer):
    """mlx-lm's datasets, except that a local file may start with a byte-order mark.

    Editors on Windows add one, `tunedeck data check` accepts it, and mlx-lm's own loader fails
    on it with a JSONDecodeError; everything after reading the rows is mlx-lm's create_dataset.
    """
    import json

    from mlx_lm.cli_ui import rprint
    from mlx_lm.tuner.datasets import create_dataset, load_dataset

    data = Path(ns.data)
    if getattr(ns, "hf_dataset", None) or not data.is_dir():
        return load_dataset(ns, tokenizer)

    def split(name):
        path = data / f"{name}.jsonl"
        if not path.exists():
            return []
        with open(path, encoding="utf-8-sig") as f:
            rows = [json.loads(line) for line in f]
        return create_dataset(rows, tokenizer, ns) if rows else []

    train, valid, test = split("train"), split("valid"), split("test")
    # The same refusals and warning as mlx_lm.tuner.datasets.load_dataset.
    if len(train) == 0:
        raise ValueError("Training set not found or empty. Must provide training set for fine-tuning.")
    if len(valid) == 0:
        rprint("Warning: Validation set not found or empty. Training will proceed without validation.")
    if ns.test and len(test) == 0:
        raise ValueError("Test set not found or empty. Must provide test set for evaluation.")
    return train, valid, test


def read_early_stopping(run: RunDirectory) -> tuple[Optional[int], float]:
    """Early stopping is tunedeck's own, so it lives in run.toml, not in mlx_lm.yaml."""
    from .config import TrainConfig

    try:
        config = TrainConfig.from_toml(run.run_toml)
    except Exception:  # a run started from a YAML config has no tunedeck-only settings
        return None, 0.0
    return config.early_stopping_patience, config.early_stopping_min_delta


@contextmanager
def global_iterations(first: int):
    """Make mlx-lm's ``train()`` count from ``first`` instead of 1.

    train() numbers its loop with ``range(1, args.iters + 1)``: validation, reports, checkpoint
    names and the last-iteration checks all derive from that number. Offsetting only that one
    call continues a run with the same schedule and never-repeating checkpoint names, while the
    loop itself stays mlx-lm's. Other ``range`` calls in the module are left alone.
    """
    from mlx_lm.tuner import trainer

    if "range(1, args.iters + 1)" not in inspect.getsource(trainer.train):
        raise RuntimeError("this mlx-lm version's train() loop is not one tunedeck can resume")

    def offset_range(*args):
        if len(args) == 2 and args[0] == 1:
            return builtins.range(first, args[1])
        return builtins.range(*args)

    class ResumedTrainUI(trainer.TrainUI):
        """The progress bar of a resumed run starts where the run stopped, not at 0%."""

        def __init__(self, total_iters, rank=0):
            super().__init__(total_iters, rank)
            progress, task = getattr(self, "_progress", None), getattr(self, "_task", None)
            if progress is not None and task is not None:
                progress.update(task, completed=first - 1)

    original_ui = trainer.TrainUI
    setattr(trainer, "range", offset_range)
    setattr(trainer, "TrainUI", ResumedTrainUI)
    try:
        yield
    finally:
        delattr(trainer, "range")
        setattr(trainer, "TrainUI", original_ui)


class PrivateNumpy:
    """numpy as mlx-lm's ``iterate_batches`` sees it, except that its ``np.random`` is a
    generator of its own.

    The legacy functions it calls (``np.random.seed``, ``np.random.permutation``) are methods of a
    RandomState with the same names and the same algorithm, so its draws are the ones the global
    generator would give after the same seed, and nothing else's draws move them. Anything
    RandomState lacks (``default_rng`` and the like, which own their state anyway) is numpy's.
    """

    class Random:
        def __init__(self) -> None:
            import numpy as np

            self._own, self._numpy = np.random.RandomState(), np.random

        def __getattr__(self, name):
            return getattr(self._own if hasattr(type(self._own), name) else self._numpy, name)

    def __init__(self) -> None:
        import numpy as np

        self._numpy, self.random = np, self.Random()

    def __getattr__(self, name):
        return getattr(self._numpy, name)


def with_private_random(function):
    """``function`` (a function of mlx-lm's) with the module globals it runs in, except that its
    ``np`` is a PrivateNumpy: a copy, mlx-lm's module and numpy's global generator stay as they are.
    """
    import types

    scope = dict(function.__globals__, np=PrivateNumpy())
    copy = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    return copy


class DeterministicBatches:
    """mlx-lm's ``iterate_batches`` with a data order that can be replayed exactly.

    Its default draws each epoch's order from NumPy's global RNG, which validation draws from too,
    so the order depends on when validations happened. Here each stream of batches runs on a
    random generator of its own (``with_private_random``), seeded by iterate_batches itself:
    every validation pass gets the same fresh one (it also evaluates the same batches each time,
    which makes val losses comparable). Resuming at iteration k draws and discards the k batches
    already trained. (Saving and restoring the global generator's state around each batch gave
    the same order, at about 0.6 ms a batch: 1.5% of a step of the tiny model.)
    """

    def __init__(self, seed: int, first_iteration: int, on_step_done, should_stop):
        self.seed = seed
        self.first_iteration = first_iteration
        self.on_step_done = on_step_done
        self.should_stop = should_stop
        self.last_yielded = first_iteration - 1  # the iteration whose batch train() holds

    def __call__(self, dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
        from mlx_lm.tuner.trainer import iterate_batches

        inner = with_private_random(iterate_batches)(
            dataset=dataset, batch_size=batch_size, max_seq_length=max_seq_length, loop=loop,
            seed=self.seed, comm_group=comm_group)
        return self._training(inner) if loop else self._evaluation(inner)

    def _training(self, inner):
        for _ in range(self.first_iteration - 1):
            next(inner)
        done = self.first_iteration - 1
        while True:
            # train() asks for batch i+1 only once step i (and its checkpoint) is complete.
            if done >= self.first_iteration:
                self.on_step_done(done)
                if self.should_stop(iteration=done):
                    return
            batch = next(inner)
            done += 1
            self.last_yielded = done
            yield batch

    def _evaluation(self, inner):
        while True:
            if self.should_stop(during_validation=True):
                raise StopRequested()
            try:
                batch = next(inner)
            except StopIteration:
                return
            yield batch


class MonitoredEvents:
    """metrics.jsonl's writer with the health monitor reading along: every event is written,
    then the findings it raises, so a run's findings are part of its record (and of train.log)."""

    def __init__(self, writer: ev.EventWriter, monitor) -> None:
        self.writer, self.monitor = writer, monitor

    def append(self, event: ev.Event) -> None:
        self.writer.append(event)
        for finding in self.monitor.observe(event):
            self.writer.append(finding)
            print(f"[tunedeck] health: {finding.issue} ({finding.severity}) at iteration "
                  f"{finding.iter}: {finding.evidence}; {finding.advice}", flush=True)


class NoEvents:
    """The events of a rank other than 0: rank 0 records the run (the ranks step together)."""

    def append(self, event: ev.Event) -> None:
        pass


# Stop requests from the weakest to the strongest: ranks that disagree take the strongest.
STOP_ORDER = (None, STOP_AFTER_CHECKPOINT, SAVE_AND_STOP, EARLY_STOP, STOP_NOW)
# The status line of a run shows its iteration from status.json (and metrics.jsonl): once a
# second is often enough for a reader.
STATUS_EVERY_S = 1.0


class StatusWriter:
    """status.json for the trainer: what must be on record at once (the start, a checkpoint, the
    end) is written before ``now`` returns; the iteration between checkpoints is written ``later``,
    by a thread of its own, so its fsync (1-9 ms) never sits inside a training step.

    Every write is a read-merge-write of the whole file under one lock, and ``now`` carries what
    ``later`` left pending, so no field is lost and the iteration never goes back. A pending
    iteration a crash leaves unwritten is in metrics.jsonl anyway.
    """

    def __init__(self, run: RunDirectory) -> None:
        import threading

        self.run = run
        self.lock = threading.Lock()
        self.pending: dict = {}
        self.wake = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def now(self, **changes) -> None:
        with self.lock:
            self.pending.update(changes)
            changes, self.pending = self.pending, {}
            self.run.update_status(**changes)

    def later(self, **changes) -> None:
        with self.lock:
            self.pending.update(changes)
        if self.thread is None:
            import threading

            self.thread = threading.Thread(target=self._write_pending, daemon=True,
                                           name="status-writer")
            self.thread.start()
        self.wake.set()

    def _write_pending(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            with self.lock:
                changes, self.pending = self.pending, {}
                if changes:
                    try:
                        self.run.update_status(**changes)
                    except OSError:
                        self.pending = {**changes, **self.pending}  # e.g. a full disk: `now` retries


class TrainingSession:
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

    # -- training callback (mlx-lm calls these) ------------------------------------------------
    def callback(self):
        from mlx_lm.tuner.trainer import TrainingCallback

        session = self

        class Recorder(TrainingCallback):
            def on_train_loss_report(self, info):
                session.trained_tokens = session.tokens_offset + int(info["trained_tokens"])
                session.events.append(ev.Train(
                    iter=info["iteration"], loss=info["train_loss"],
                    lr=float(info["learning_rate"]), it_per_sec=info["iterations_per_second"],
                    tokens_per_sec=info["tokens_per_second"], trained_tokens=session.trained_tokens,
                    peak_mem_gb=peak_memory_gb(info["peak_memory"])))
                # At most once a STATUS_EVERY_S between reports, and off this thread;
                # metrics.jsonl has each iteration anyway.
                now = time.monotonic()
                if session.records and now - session.status_written_at >= STATUS_EVERY_S:
                    session.status_written_at = now
                    session.status_writer.later(iter=info["iteration"])

            def on_val_loss_report(self, info):
                # mlx-lm passes it-1 here but prints it; events use the printed number.
                iteration = info["iteration"] + 1
                loss = info["val_loss"]
                session.events.append(ev.Val(iter=iteration, loss=loss, seconds=info["val_time"]))
                session.note_validation(iteration, loss)

        recorder = Recorder()
        reporter = self.reporting_callback()
        if reporter is None:
            return recorder

        class Both(TrainingCallback):
            """tunedeck's recorder first (the run's own record), then wandb / swanlab."""

            def on_train_loss_report(self, info):
                recorder.on_train_loss_report(info)
                reporter.on_train_loss_report(info)

            def on_val_loss_report(self, info):
                recorder.on_val_loss_report(info)
                reporter.on_val_loss_report(info)

        return Both()

    def reporting_callback(self):
        """mlx-lm's own wandb / swanlab callbacks for ``report_to``, set up as mlx_lm.lora does."""
        report_to = self.args.get("report_to")
        if not report_to or not self.records:
            return None
        from mlx_lm.tuner.callbacks import get_reporting_callbacks

        # mlx-lm annotates config as a str; mlx_lm.lora passes its arguments' dict, as here.
        return get_reporting_callbacks(report_to, project_name=self.args.get("project_name"),
                                       log_dir=str(self.run.adapters),
                                       config=dict(self.args))  # type: ignore[arg-type]

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
    def build(self):
        import types

        import mlx.core as mx
        import mlx.optimizers as optim
        import numpy as np
        from mlx_lm.cli_ui import make_console, print_lora_run_header, rprint
        from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers, print_trainable_parameters
        from mlx_lm.utils import load, save_config

        args = self.args
        ns = types.SimpleNamespace(**args)
        # The same seeding, loading and layer set-up, in the same order, as mlx_lm.lora.
        np.random.seed(args["seed"])
        rprint("Loading pretrained model")
        loaded = load(args["model"], tokenizer_config={"trust_remote_code": args["trust_remote_code"]},
                      trust_remote_code=args["trust_remote_code"])
        model, tokenizer = loaded[0], loaded[1]
        rprint("Loading datasets")
        self.train_set, self.valid_set, self.test_set = load_splits(ns, tokenizer)
        rprint("Training")
        mx.random.seed(args["seed"])
        model.freeze()
        if args["num_layers"] > len(model.layers):
            raise ValueError(f"Requested to train {args['num_layers']} layers but the model only "
                             f"has {len(model.layers)} layers.")
        if args["fine_tune_type"] == "full":
            for layer in model.layers[-max(args["num_layers"], 0):]:
                layer.unfreeze()
            ns.lora_parameters = None
        else:
            linear_to_lora_layers(model, args["num_layers"], args["lora_parameters"],
                                  use_dora=args["fine_tune_type"] == "dora")

        resume: Optional[ResumeState] = None
        if self.resume_from is not None:
            resume = load_state(self.run.adapters, self.resume_from)
            if resume is None:
                raise RuntimeError(f"checkpoint {self.resume_from} has no complete resume state")
            rprint(f"Loading fine-tuned weights from {adapter_file(self.run.adapters, self.resume_from)}")
            model.load_weights(str(adapter_file(self.run.adapters, self.resume_from)), strict=False)
        elif args.get("resume_adapter_file"):
            rprint(f"Loading fine-tuned weights from {args['resume_adapter_file']}")
            model.load_weights(args["resume_adapter_file"], strict=False)

        print_lora_run_header(make_console(), ns)
        print_trainable_parameters(model)
        if self.records:
            self.run.adapters.mkdir(parents=True, exist_ok=True)
            save_config(vars(ns), self.run.adapters / "adapter_config.json")

        lr = build_schedule(args["lr_schedule"]) if args.get("lr_schedule") else args["learning_rate"]
        name = args["optimizer"].lower()
        classes = {"adam": optim.Adam, "adamw": optim.AdamW, "muon": optim.Muon, "sgd": optim.SGD,
                   "adafactor": optim.Adafactor}
        self.optimizer = classes[name](learning_rate=lr, **args.get("optimizer_config", {}).get(name, {}))
        if resume is not None:
            # A resume may bring a new learning rate (tunedeck resume --learning-rate).
            restore_optimizer(self.optimizer, self.run.adapters, resume.iteration,
                              self.run.read_status().get("resume_learning_rate"))
            reseed(args["seed"], resume.iteration)
            self.tokens_offset = self.trained_tokens = resume.trained_tokens
            self.last_checkpoint = resume.iteration
        self.model = model
        return resume

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
                      iterate_batches=batches, training_callback=self.callback())
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

        The torn files of the checkpoint being written go first (tunedeck's own temporary files
        are already gone, see atomic_path): that also frees the room the record of the failure needs.
        """
        from .resume_state import load_state

        if not self.records:
            return self.fail(OSError(errno.ENOSPC, "no space left on this rank's disk"))
        in_progress = self.batches.last_yielded if self.batches is not None else None
        if in_progress and load_state(self.run.adapters, in_progress) is None:
            for torn in self.run.adapters.glob(f"{in_progress:07d}_*"):
                torn.unlink(missing_ok=True)
        usage = shutil.disk_usage(self.run.path)
        resume = (f"the last complete checkpoint is {self.last_checkpoint}: free some space, then "
                  f"`tunedeck resume {self.run.path}`" if self.last_checkpoint else
                  "no checkpoint was complete yet: free some space and start again")
        message = (f"disk full: {mount_point(self.run.path)} has {human_bytes(usage.free)} left "
                   f"while writing to {self.run.path}")
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
        # Adam and AdamW keep two moments per weight; the others one or none.
        moments = 2 if self.args["optimizer"].lower() in ("adam", "adamw") else 1
        per_checkpoint = weights * (1 + moments)
        save_every, total = self.args["save_every"], self.args["iters"]
        count = len(range(first + (-first) % save_every, total + 1, save_every)) + 1  # + the final
        need = per_checkpoint * count + weights  # adapters.safetensors, rewritten at each save
        free = shutil.disk_usage(self.run.path).free
        if need <= free:
            return
        evidence = (f"{mount_point(self.run.path)} has {human_bytes(free)} free; {count} checkpoints "
                    f"of about {human_bytes(per_checkpoint)} each need {human_bytes(need)}")
        advice = "free some space, or raise save_every so fewer checkpoints are kept"
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


def disk_full(exc: BaseException) -> bool:
    """A write that failed for want of space: Python's ENOSPC, or MLX's own writer, which says
    only "[write] Unable to write N bytes to file." (a RuntimeError)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, RuntimeError) and "Unable to write" in str(exc)


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem ``path`` is on: the disk a user recognises."""
    path = Path(path).resolve()
    device = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


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
    and ends the run when one fails (core.distributed)."""
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
