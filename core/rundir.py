"""A run is a directory; everything about it is in files, so any process can follow it.

    run.toml       the config as the user saved it      mlx_lm.yaml   what the runner runs
    command.txt    the equivalent mlx_lm.lora command    status.json   pid, state, times
    train.log      everything the training process printed, across resumes
    metrics.jsonl  structured events, appended           adapters/     mlx-lm adapter dir + resume state
    .lock          held (flock) by the process training in this directory
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Optional

# States written to status.json. "interrupted" is never written: it is what a "running" status
# means when no process holds the lock any more (a hard kill, a crash of the machine).
RUNNING_STATES = ("starting", "running")
FINAL_STATES = ("finished", "failed", "stopped")


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name in the same directory, then rename: readers never see half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDirectory:
    def __init__(self, path: Path | str):
        # Absolute: the runner works inside the run directory, and a relative path would not
        # lead back to it from there.
        self.path = Path(path).absolute()

    # The files, by name, so no caller spells a path twice.
    run_toml = property(lambda self: self.path / "run.toml")
    mlx_yaml = property(lambda self: self.path / "mlx_lm.yaml")
    command_txt = property(lambda self: self.path / "command.txt")
    status_json = property(lambda self: self.path / "status.json")
    train_log = property(lambda self: self.path / "train.log")
    metrics_jsonl = property(lambda self: self.path / "metrics.jsonl")
    adapters = property(lambda self: self.path / "adapters")
    lock_file = property(lambda self: self.path / ".lock")

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.status_json.exists() or self.run_toml.exists()

    # -- status ------------------------------------------------------------------------------
    def read_status(self) -> dict:
        try:
            return json.loads(self.status_json.read_text())
        except (OSError, ValueError):
            return {}

    def update_status(self, **changes) -> dict:
        status = self.read_status()
        status.update(changes)
        status["updated_at"] = time.time()
        write_atomic(self.status_json, json.dumps(status, indent=1) + "\n")
        return status

    def state(self) -> str:
        """The state as a user should see it, correcting a "running" left by a killed process."""
        state = self.read_status().get("state", "unknown")
        if state in RUNNING_STATES and not self.is_locked():
            return "interrupted"
        return state

    # -- locking -----------------------------------------------------------------------------
    def acquire_lock(self) -> Optional[int]:
        """Take the training lock; returns the fd to keep open, or None if another process has it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    def is_locked(self) -> bool:
        if not self.lock_file.exists():
            return False
        fd = os.open(self.lock_file, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False


def find_runs(root: Path) -> list[RunDirectory]:
    """Run directories directly under ``root``, oldest first."""
    if not root.is_dir():
        return []
    runs = [RunDirectory(p) for p in root.iterdir() if p.is_dir() and (p / "status.json").exists()]
    return sorted(runs, key=lambda r: r.read_status().get("created_at", 0))
