"""The training process: ``python -m tunedeck.core.runner RUN_DIR [--resume-from ITER] [--iters N]``.

Training is mlx-lm's own: its model loading, datasets, LoRA layers, optimizers, schedules, loss,
batching and its ``trainer.train`` loop, which prints mlx-lm's usual output into ``train.log``.
tunedeck adds, around that loop and without touching its maths:

* events in ``metrics.jsonl`` from mlx-lm's training callback (learning rate, peak memory…);
* exact resume: with every checkpoint the optimizer state, random key and counters are saved;
  the data order is a deterministic function of the seed and is replayed up to the checkpoint;
  iteration numbers continue globally, so checkpoint names never repeat;
* graceful stops (SIGTERM now, SIGUSR1 after the next checkpoint, SIGUSR2 save-then-stop) and
  early stopping on validation loss.
"""

from __future__ import annotations

import argparse
import builtins
import inspect
import math
import os
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from .resume_state import (ResumeState, adapter_file, load_state, restore_optimizer,
                           save_optimizer)
from . import events as ev
from .rundir import RunDirectory

STOP_NOW, STOP_AFTER_CHECKPOINT, SAVE_AND_STOP, EARLY_STOP = "now", "after-checkpoint", "save", "early"


def reseed(seed: int, iteration: int) -> None:
    """Restart MLX's random stream (LoRA dropout) at a checkpoint.

    MLX offers no way to set its random key to a saved value, so instead both a straight run and
    a resumed one reseed from (seed, iteration) at every checkpoint: their streams then agree.
    """
    import mlx.core as mx

    mx.random.seed((seed * 1_000_003 + iteration) % 2**32)


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
    trainer.range, trainer.TrainUI = offset_range, ResumedTrainUI
    try:
        yield
    finally:
        del trainer.range
        trainer.TrainUI = original_ui


class DeterministicBatches:
    """mlx-lm's ``iterate_batches`` with a data order that can be replayed exactly.

    Its default draws each epoch's order from NumPy's global RNG, which validation draws from too,
    so the order depends on when validations happened. Here the training stream seeds itself and
    keeps a private RNG state, and every validation pass gets the same fresh state (it also
    evaluates the same batches each time, which makes val losses comparable). Resuming at
    iteration k draws and discards the k batches already trained.
    """

    def __init__(self, seed: int, first_iteration: int, on_step_done, should_stop):
        self.seed = seed
        self.first_iteration = first_iteration
        self.on_step_done = on_step_done
        self.should_stop = should_stop
        self.last_yielded = first_iteration - 1  # the iteration whose batch train() holds

    def __call__(self, dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
        from mlx_lm.tuner.trainer import iterate_batches

        inner = iterate_batches(dataset=dataset, batch_size=batch_size,
                                max_seq_length=max_seq_length, loop=loop,
                                seed=self.seed, comm_group=comm_group)
        return self._training(inner) if loop else self._evaluation(inner)

    @staticmethod
    def _draw(inner, rng_state):
        import numpy as np

        outer = np.random.get_state()
        if rng_state is not None:
            np.random.set_state(rng_state)
        try:
            return next(inner), np.random.get_state()
        finally:
            np.random.set_state(outer)

    def _training(self, inner):
        rng_state = None
        for _ in range(self.first_iteration - 1):
            _, rng_state = self._draw(inner, rng_state)
        done = self.first_iteration - 1
        while True:
            # train() asks for batch i+1 only once step i (and its checkpoint) is complete.
            if done >= self.first_iteration:
                self.on_step_done(done)
                if self.should_stop():
                    return
            batch, rng_state = self._draw(inner, rng_state)
            done += 1
            self.last_yielded = done
            yield batch

    def _evaluation(self, inner):
        rng_state = None
        while True:
            if self.should_stop(during_validation=True):
                raise StopRequested()
            try:
                batch, rng_state = self._draw(inner, rng_state)
            except StopIteration:
                return
            yield batch


class TrainingSession:
    def __init__(self, run: RunDirectory, resume_from: Optional[int], total_iters: Optional[int]):
        self.run = run
        self.completed = 0
        self.resume_from = resume_from
        self.args = read_mlx_args(run, total_iters)
        self.patience, self.min_delta = read_early_stopping(run)
        self.events = ev.EventWriter(run.metrics_jsonl)
        self.stop_mode: Optional[str] = None
        self.last_checkpoint: Optional[int] = None
        self.tokens_offset = 0
        self.trained_tokens = 0
        self.best_val = math.inf
        self.evals_since_best = 0

    # -- signals ----------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def request(mode):
            def handler(signum, frame):
                # The strongest request wins: "now" beats "save" beats "after checkpoint".
                order = [STOP_AFTER_CHECKPOINT, SAVE_AND_STOP, STOP_NOW]
                if self.stop_mode not in order or order.index(mode) > order.index(self.stop_mode):
                    self.stop_mode = mode
                    print(f"[tunedeck] stop requested ({mode})", flush=True)
            return handler

        signal.signal(signal.SIGTERM, request(STOP_NOW))
        signal.signal(signal.SIGINT, request(STOP_NOW))
        signal.signal(signal.SIGUSR1, request(STOP_AFTER_CHECKPOINT))
        signal.signal(signal.SIGUSR2, request(SAVE_AND_STOP))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal never stops a run

    def should_stop(self, during_validation: bool = False) -> bool:
        if during_validation:
            return self.stop_mode == STOP_NOW
        return self.stop_mode in (STOP_NOW, SAVE_AND_STOP, EARLY_STOP)

    # -- checkpoints -------------------------------------------------------------------------
    def save_resume_state(self, iteration: int) -> None:

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
        self.run.update_status(iter=iteration, last_checkpoint=iteration)

    def save_checkpoint_now(self, iteration: int) -> None:
        """A numbered checkpoint at an iteration mlx-lm did not save at (stop --save, the end)."""
        import mlx.core as mx
        from mlx.utils import tree_flatten
        from mlx_lm.cli_ui import rprint

        final = adapter_file(self.run.adapters, iteration)
        tmp = final.with_name(f".{final.stem}.tmp.safetensors")
        mx.save_safetensors(str(tmp), dict(tree_flatten(self.model.trainable_parameters())))
        os.replace(tmp, final)
        rprint(f"  save  {final.name}")
        self.save_resume_state(iteration)

    def on_step_done(self, iteration: int) -> None:
        saved_by_mlx = iteration % self.args["save_every"] == 0
        if saved_by_mlx:
            self.save_resume_state(iteration)
        if self.stop_mode == STOP_AFTER_CHECKPOINT and saved_by_mlx:
            self.stop_mode = STOP_NOW
        elif self.stop_mode == SAVE_AND_STOP and not saved_by_mlx:
            self.save_checkpoint_now(iteration)

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
                    peak_mem_gb=info["peak_memory"]))
                session.run.update_status(iter=info["iteration"])

            def on_val_loss_report(self, info):
                # mlx-lm passes it-1 here but prints it; events use the printed number.
                iteration = info["iteration"] + 1
                loss = info["val_loss"]
                session.events.append(ev.Val(iter=iteration, loss=loss, seconds=info["val_time"]))
                session.note_validation(iteration, loss)

        return Recorder()

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
        model, tokenizer = load(args["model"], tokenizer_config={"trust_remote_code": args["trust_remote_code"]},
                                trust_remote_code=args["trust_remote_code"])
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
        self.run.adapters.mkdir(parents=True, exist_ok=True)
        save_config(vars(ns), self.run.adapters / "adapter_config.json")

        lr = build_schedule(args["lr_schedule"]) if args.get("lr_schedule") else args["learning_rate"]
        name = args["optimizer"].lower()
        classes = {"adam": optim.Adam, "adamw": optim.AdamW, "muon": optim.Muon, "sgd": optim.SGD,
                   "adafactor": optim.Adafactor}
        self.optimizer = classes[name](learning_rate=lr, **args.get("optimizer_config", {}).get(name, {}))
        if resume is not None:
            restore_optimizer(self.optimizer, self.run.adapters, resume.iteration)
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
        batches = DeterministicBatches(args["seed"], first_iteration, self.on_step_done, self.should_stop)
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
        if last > (self.last_checkpoint or 0) and last % args["save_every"] == 0:
            self.save_resume_state(last)
        elif last == args["iters"] and last != self.last_checkpoint:
            # A numbered checkpoint at the end too, so the run can be extended exactly.
            self.save_checkpoint_now(last)

    def test(self) -> None:
        from mlx_lm.cli_ui import rprint
        from mlx_lm.tuner.datasets import CacheDataset
        from mlx_lm.tuner.trainer import evaluate

        args = self.args
        rprint("Testing")
        batches = DeterministicBatches(args["seed"], 1, lambda i: None, lambda **_: False)
        loss = evaluate(model=self.model, dataset=CacheDataset(self.test_set),
                        batch_size=args["batch_size"], num_batches=args["test_batches"],
                        max_seq_length=args["max_seq_length"], iterate_batches=batches)
        ppl = math.exp(loss)
        rprint(f"Test loss {loss:.3f}, Test ppl {ppl:.3f}.")
        self.events.append(ev.Test(loss=loss, ppl=ppl))

    def execute(self) -> int:
        self.install_signal_handlers()
        now = time.time()
        self.run.update_status(state="running", pid=os.getpid(), started_at=now,
                               total_iters=self.args["iters"], ended_at=None, error=None)
        try:
            resume = self.build()
            first = resume.iteration + 1 if resume else 1
            if resume:
                self.events.append(ev.Resume(
                    iter=resume.iteration, source=str(adapter_file(self.run.adapters, resume.iteration))))
            self.events.append(ev.Start(total_iters=self.args["iters"]))
            self.run.update_status(total_iters=self.args["iters"])
            self.train(first)
            if self.stop_mode is None and self.args.get("test"):
                self.test()
        except Exception as exc:
            traceback.print_exc()
            message = f"{type(exc).__name__}: {exc}"
            self.events.append(ev.Error(message=message))
            self.events.append(ev.End(state="failed"))
            self.run.update_status(state="failed", error=message, ended_at=time.time())
            return 1
        state = "stopped" if self.stop_mode in (STOP_NOW, SAVE_AND_STOP, STOP_AFTER_CHECKPOINT) else "finished"
        extra = {"reason": "early_stopping"} if self.stop_mode == EARLY_STOP else {}
        self.events.append(ev.End(state=state))
        self.run.update_status(state=state, ended_at=time.time(), iter=self.completed, **extra)
        print(f"[tunedeck] run {state} at iteration {self.completed}"
              + (f"; last checkpoint {self.last_checkpoint}" if self.last_checkpoint else ""), flush=True)
        return 0

    def save_final_weights(self) -> None:
        """What train() does after its loop, for a stop that came in the middle of a validation."""
        import mlx.core as mx
        from mlx.utils import tree_flatten

        mx.save_safetensors(str(self.run.adapters / "adapters.safetensors"),
                            dict(tree_flatten(self.model.trainable_parameters())))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.runner")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume-from", type=int, help="continue from this checkpoint iteration")
    parser.add_argument("--iters", type=int, help="total iterations (extends the plan when larger)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = RunDirectory(args.run_dir)
    lock = run.acquire_lock()
    if lock is None:
        print(f"tunedeck: error: {run.path}: another process is training in this run directory",
              file=sys.stderr)
        return 2
    return TrainingSession(run, args.resume_from, args.iters).execute()


if __name__ == "__main__":
    sys.exit(main())
