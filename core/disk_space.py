"""A full disk, explained: before a run, whether its checkpoints will fit; when a write fails for
want of space, one line naming the disk, the space left and the checkpoint that still resumes."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Optional

from .resume_state import load_state
from .text import size_text


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




def remove_torn_checkpoint(adapters: Path, iteration: Optional[int]) -> None:
    """The files of the checkpoint a full disk interrupted: without a complete resume record they
    cannot be resumed from, and removing them frees the room the record of the failure needs.
    (tunedeck's own temporary files are already gone, see atomic_path.)"""
    if iteration and load_state(adapters, iteration) is None:
        for torn in adapters.glob(f"{iteration:07d}_*"):
            torn.unlink(missing_ok=True)


def disk_full_report(run_path: Path, last_checkpoint: Optional[int]) -> tuple[str, str]:
    """What failed and what still resumes: the error's message and its advice."""
    usage = shutil.disk_usage(run_path)
    resume = (f"the last complete checkpoint is {last_checkpoint}: free some space, then "
              f"`tunedeck resume {run_path}`" if last_checkpoint else
              "no checkpoint was complete yet: free some space and start again")
    message = (f"disk full: {mount_point(run_path)} has {size_text(usage.free)} left "
               f"while writing to {run_path}")
    return message, resume


def low_disk_warning(run_path: Path, weights: int, optimizer: str, save_every: int, first: int,
                     total: int) -> Optional[tuple[str, str]]:
    """Will the checkpoints from iteration ``first`` to ``total`` fit on the disk? If not, the
    evidence and the advice of a warning; ``weights`` is the trainable weights' size in bytes."""
    # Adam and AdamW keep two moments per weight; the others one or none.
    moments = 2 if optimizer.lower() in ("adam", "adamw") else 1
    per_checkpoint = weights * (1 + moments)
    count = len(range(first + (-first) % save_every, total + 1, save_every)) + 1  # + the final
    need = per_checkpoint * count + weights  # adapters.safetensors, rewritten at each save
    free = shutil.disk_usage(run_path).free
    if need <= free:
        return None
    evidence = (f"{mount_point(run_path)} has {size_text(free)} free; {count} checkpoints "
                f"of about {size_text(per_checkpoint)} each need {size_text(need)}")
    return evidence, "free some space, or raise save_every so fewer checkpoints are kept"
