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
import struct
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

# States written to status.json. "interrupted" is never written: it is what a "running" status
# means when no process holds the lock any more (a hard kill, a crash of the machine).
RUNNING_STATES = ("starting", "running")
FINAL_STATES = ("finished", "failed", "stopped")


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` when the block ends without error.

    The one atomic write of tunedeck: readers never see half a file, and a failure (a full disk,
    a kill between write and rename excepted) leaves the old file and no temporary one. The
    writer must have closed the file; it is fsynced here before the rename. ``suffix`` keeps an
    extension a writer insists on (mx.save_safetensors wants ``.safetensors``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{suffix if suffix != '.tmp' else ''}")
    try:
        yield tmp
        mode = _mode_for(path)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def _mode_for(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would leave: the file's own, or 0o666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: Path, data: Union[str, bytes]) -> None:
    """Write text or bytes to ``path`` atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)


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
    # A POSIX record lock (fcntl F_SETLK), not flock: it can be tested with F_GETLK without taking
    # it, so a UI probing "is it running?" can never make a starting runner find the lock busy.
    # It is released when the holder exits, however it dies.
    def acquire_lock(self) -> Optional[int]:
        """Take the training lock; returns the fd to keep open, or None if another process has it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    def lock_holder(self) -> Optional[int]:
        """The pid of the process holding the training lock, or None; takes no lock itself."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            query = _flock_struct(fcntl.F_WRLCK)
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        finally:
            os.close(fd)
        lock_type, pid = _flock_unpack(answer)
        return pid if lock_type != fcntl.F_UNLCK else None

    def is_locked(self) -> bool:
        return self.lock_holder() is not None


# struct flock differs by platform: Linux puts type and whence first, the BSDs (macOS) last.
if sys.platform == "darwin":
    _FLOCK = "qqihh"

    def _flock_struct(lock_type: int) -> bytes:
        return struct.pack(_FLOCK, 0, 0, 0, lock_type, os.SEEK_SET)

    def _flock_unpack(data: bytes) -> tuple[int, int]:
        _start, _len, pid, lock_type, _whence = struct.unpack(_FLOCK, data)
        return lock_type, pid
else:
    _FLOCK = "hhqqi"

    def _flock_struct(lock_type: int) -> bytes:
        return struct.pack(_FLOCK, lock_type, os.SEEK_SET, 0, 0, 0)

    def _flock_unpack(data: bytes) -> tuple[int, int]:
        lock_type, _whence, _start, _len, pid = struct.unpack(_FLOCK, data)
        return lock_type, pid


def find_runs(root: Path) -> list[RunDirectory]:
    """Run directories directly under ``root``, oldest first."""
    if not root.is_dir():
        return []
    runs = [RunDirectory(p) for p in root.iterdir() if p.is_dir() and (p / "status.json").exists()]
    return sorted(runs, key=lambda r: r.read_status().get("created_at", 0))
