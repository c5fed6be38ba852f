"""A training run's answer checks (core.probes), each in a process of its own beside the training.

The training process starts ``python -m tunedeck.core.probes RUN ITER`` after each checkpoint it
saves. This module decides when (one check at a time; of the checkpoints saved meanwhile only the
newest waits) and holds both ends of the lifeline that keeps a check from outliving its run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional


class CheckpointChecks:
    """The answer checks of a training run's checkpoints, each in a process of its own so that
    the training process keeps its memory and its pace (the check runs at a lower priority).

    At most one runs at a time. A checkpoint saved while one runs waits for it; only the newest
    waits, an older one is skipped (with a line in train.log saying so). ``close`` ends them with
    the run: a run that finished waits for its last check; a stopped or failed one ends the
    running check and drops the waiting one.

    No check outlives its run, however the run dies: each check process holds the read end of a
    pipe whose only writer is the training process (its end closes when that process dies, even
    by ``kill -9``), and looks for the run's supervisor every second; either gone, it exits.
    """

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.running: Optional[tuple] = None   # (iteration, Popen)
        self.waiting: Optional[int] = None
        self.closed = False
        self._changed = threading.Condition()
        if enabled:
            import atexit

            self.supervisor = os.getppid()
            self._lifeline, self._lifeline_writer = os.pipe()
            # Whatever way the training process leaves (a failure, an exception), no check stays.
            atexit.register(self.close, wait=False)

    @classmethod
    def for_run(cls, run) -> "CheckpointChecks":
        """As the run's config says (``answer_checks`` in run.toml; off for a run without one)."""
        from .config import TrainConfig

        try:
            enabled = bool(TrainConfig.from_toml(run.run_toml).answer_checks)
        except Exception:  # a run started from an mlx-lm YAML has no tunedeck-only settings
            enabled = False
        return cls(run.path, enabled)

    def checkpoint_saved(self, iteration: int) -> None:
        """A checkpoint's files are complete: check it now, or after the check running now."""
        if not self.enabled:
            return
        with self._changed:
            if self.closed:
                return
            if self.running is None:
                self._start(iteration)
                return
            if self.waiting is not None:
                print(f"[tunedeck] answer check of checkpoint {self.waiting} skipped: the check of "
                      f"checkpoint {self.running[0]} was still running when checkpoint {iteration} "
                      f"came", flush=True)
            self.waiting = iteration

    def _start(self, iteration: int) -> None:
        """Called with the lock held."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tunedeck.core.probes", str(self.run_dir), str(iteration),
             "--lifeline", str(self._lifeline), "--supervisor", str(self.supervisor)],
            stdin=subprocess.DEVNULL, pass_fds=(self._lifeline,))
        self.running = (iteration, process)
        threading.Thread(target=self._reap, args=(process,), daemon=True,
                         name=f"answer-check-{iteration}").start()

    def _reap(self, process: subprocess.Popen) -> None:
        process.wait()
        with self._changed:
            self.running = None
            if self.waiting is not None and not self.closed:
                iteration, self.waiting = self.waiting, None
                self._start(iteration)
            self._changed.notify_all()

    def close(self, wait: bool, give_up=lambda: False) -> None:
        """``wait``: let the running check and the waiting one finish (polling ``give_up``, e.g.
        a stop asked meanwhile); otherwise end the running one and drop the waiting one."""
        if not self.enabled:
            return
        with self._changed:
            if wait and self.running is not None and not self.closed:
                left = [str(self.running[0])] + ([str(self.waiting)] if self.waiting is not None else [])
                print(f"[tunedeck] waiting for the answer check of checkpoint "
                      f"{' and then '.join(left)} before the run ends", flush=True)
                while (self.running is not None or self.waiting is not None) and not give_up():
                    self._changed.wait(timeout=0.5)
            self.closed = True
            if self.waiting is not None:
                print(f"[tunedeck] answer check of checkpoint {self.waiting} not run: the run ended",
                      flush=True)
                self.waiting = None
            if self.running is not None:
                iteration, process = self.running
                print(f"[tunedeck] answer check of checkpoint {iteration} stopped with the run",
                      flush=True)
                process.terminate()
                if not self._changed.wait_for(lambda: self.running is None, timeout=30):
                    process.kill()
                    self._changed.wait_for(lambda: self.running is None, timeout=30)


def end_with_the_run(lifeline: int, supervisor: int, iteration: str) -> None:
    """In a check process: exit as soon as the training process or the supervisor is gone."""
    import select

    def watch():
        while True:
            ready, _, _ = select.select([lifeline], [], [], 1.0)
            # Readable means end of file: the only writer, the training process, is gone.
            gone = bool(ready) and not os.read(lifeline, 1)
            try:
                os.kill(supervisor, 0)
            except ProcessLookupError:
                gone = True
            except PermissionError:
                pass
            if gone:
                print(f"[tunedeck] answer check of checkpoint {iteration} ended: its run is gone",
                      flush=True)
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="run-watch").start()

