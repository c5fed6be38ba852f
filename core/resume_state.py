"""What a checkpoint needs beyond its adapter weights to continue exactly where it stopped.

Beside ``0000100_adapters.safetensors`` (mlx-lm's own checkpoint) the runner writes
``0000100_optimizer.safetensors`` (the optimizer state: moments, step, learning rate) and then
``0000100_resume.json`` (iteration, counters). The random stream (LoRA dropout) needs no saving:
the runner reseeds it at every checkpoint from the seed and the iteration. The JSON is written last and
atomically, so its presence means the whole checkpoint is complete and loadable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .rundir import atomic_path, write_atomic
from .tensors import load_tensors


def adapter_file(adapters: Path, iteration: int) -> Path:
    return adapters / f"{iteration:07d}_adapters.safetensors"


def optimizer_file(adapters: Path, iteration: int) -> Path:
    return adapters / f"{iteration:07d}_optimizer.safetensors"


def state_file(adapters: Path, iteration: int) -> Path:
    return adapters / f"{iteration:07d}_resume.json"


@dataclass
class ResumeState:
    iteration: int
    trained_tokens: int          # mlx-lm's cumulative token counter restarts; we carry it on
    adapter_bytes: int           # size of the adapter file when saved: a torn file is refused

    def save(self, adapters: Path) -> Path:
        path = state_file(adapters, self.iteration)
        write_atomic(path, json.dumps(asdict(self), indent=1) + "\n")
        return path


def load_state(adapters: Path, iteration: int) -> Optional[ResumeState]:
    """The resume state of a checkpoint, or None when it is missing or does not match its files."""
    path = state_file(adapters, iteration)
    try:
        state = ResumeState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    weights = adapter_file(adapters, iteration)
    if not optimizer_file(adapters, iteration).exists() or not weights.exists():
        return None
    if weights.stat().st_size != state.adapter_bytes:
        return None
    return state


def save_optimizer(optimizer, adapters: Path, iteration: int) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    # fsynced and renamed before resume.json is written: the record never points at a torn file.
    with atomic_path(optimizer_file(adapters, iteration), ".safetensors") as tmp:
        mx.save_safetensors(str(tmp), dict(tree_flatten(optimizer.state)))


def restore_optimizer(optimizer, adapters: Path, iteration: int,
                      learning_rate: Optional[float] = None) -> None:
    """The optimizer as it was at the checkpoint: moments, step count and learning rate, or
    ``learning_rate`` instead of the saved rate (a resume with a new rate, e.g. the one a
    ``diverging`` finding offers). The new rate is part of the state the next checkpoints
    save, so a later resume from one of them keeps it."""
    from mlx.utils import tree_unflatten

    saved = load_tensors(optimizer_file(adapters, iteration))
    optimizer.state = tree_unflatten(list(saved.items()))
    if learning_rate is not None:
        before = optimizer.state.get("learning_rate")
        optimizer.learning_rate = learning_rate
        was = f"{before.item():g}" if before is not None else "the saved one"
        print(f"[tunedeck] learning rate {was} → {learning_rate:g} from checkpoint {iteration} on; "
              f"the optimizer state and the iteration count carry on", flush=True)
