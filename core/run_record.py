"""What the trainer puts on record as it trains: metrics.jsonl's events (from mlx-lm's training
callback, with the health monitor reading along), status.json's fields, and reports to wandb /
swanlab through mlx-lm's own reporting callbacks, next to tunedeck's recorder."""

from __future__ import annotations

import sys
import time
from typing import Optional

from . import events as ev
from .rundir import RunDirectory

# The status line of a run shows its iteration from status.json (and metrics.jsonl): once a
# second is often enough for a reader.
STATUS_EVERY_S = 1.0


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



def training_callback(session):
    """mlx-lm's training callback for a TrainingSession: its events and status, then any
    ``report_to`` reporter."""
    from mlx_lm.tuner.trainer import TrainingCallback

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
    reporter = reporting_callback(session.args, session.run, session.records)
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


def reporting_callback(args: dict, run: RunDirectory, records: bool):
    """mlx-lm's own wandb / swanlab callbacks for ``report_to``, set up as mlx_lm.lora does, in
    the process that records the run (``records``)."""
    report_to = args.get("report_to")
    if not report_to or not records:
        return None
    from mlx_lm.tuner.callbacks import get_reporting_callbacks

    # mlx-lm annotates config as a str; mlx_lm.lora passes its arguments' dict, as here.
    return get_reporting_callbacks(report_to, project_name=args.get("project_name"),
                                   log_dir=str(run.adapters),
                                   config=dict(args))  # type: ignore[arg-type]
