"""Rough numbers for the form: memory a run will need and, from earlier runs, how long it takes.

Both are orders of magnitude to plan with, not promises. The memory figure counts the weights
as stored (quantized models stay quantized), the trainable parameters with Adam's two moments,
and activations at max_seq_length for the trained blocks; mlx-lm's real peak shows in the
Training pane once a run reports.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .checkpoints import run_events
from .events import Train
from .rundir import find_runs

GB = 1024 ** 3
# Activation bytes kept per token, per hidden unit, per trained block (bf16, attention and MLP
# intermediates); a quarter of it with gradient checkpointing.
ACTIVATION_FACTOR = 34
LINEARS_PER_BLOCK = 7  # q, k, v, o, gate, up, down


@dataclass
class MemoryEstimate:
    weights_gb: float
    trainable_gb: float
    activations_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.trainable_gb + self.activations_gb


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a model directory, read once per model (in a worker)."""

    hidden: int
    blocks: int
    weights_bytes: int


def read_model_shape(model_dir: Optional[Path]) -> Optional[ModelShape]:
    """None when ``model_dir`` is not a model directory with a usable config.json."""
    if model_dir is None:
        return None
    try:
        shape = json.loads((model_dir / "config.json").read_text())
        hidden = int(shape.get("hidden_size") or shape.get("d_model") or 0)
        blocks = int(shape.get("num_hidden_layers") or shape.get("n_layers") or 0)
        weights = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return ModelShape(hidden, blocks, weights) if hidden and blocks else None


def estimate_memory(config, shape: Optional[ModelShape]) -> Optional[MemoryEstimate]:
    """The estimate for ``config`` on a model of ``shape``; no file is read (a form calls it
    on every keystroke)."""
    if shape is None:
        return None
    hidden, blocks, weights = shape.hidden, shape.blocks, shape.weights_bytes
    trained = blocks if config.num_layers == -1 else min(config.num_layers, blocks)
    if config.fine_tune_type == "full":
        params = weights / 2 * trained / blocks  # bf16 weights of the trained blocks
    else:
        params = trained * LINEARS_PER_BLOCK * config.lora_parameters.rank * 2 * hidden
    trainable = params * 4 * 3  # fp32 parameters, gradients' and Adam's moments
    factor = ACTIVATION_FACTOR / (4 if config.grad_checkpoint else 1)
    activations = config.batch_size * config.max_seq_length * hidden * trained * factor
    return MemoryEstimate(weights / GB, trainable / GB, activations / GB)


@dataclass
class MeasuredSpeed:
    seconds_per_iter: float
    run_name: str


def measured_speed(runs_root: Optional[Path], model: str, batch_size: int) -> Optional[MeasuredSpeed]:
    """Seconds per iteration of the latest run of the same model (its directory, as runs record
    it), scaled to ``batch_size``."""
    if runs_root is None:
        return None
    for run in reversed(find_runs(runs_root)):
        status = run.read_status()
        if str(status.get("model")) != str(model):
            continue
        rates = [e.it_per_sec for e in run_events(run) if isinstance(e, Train) and e.it_per_sec]
        if not rates:
            continue
        per_iter = statistics.median(1 / rate for rate in rates[-20:])
        ran_batch = _batch_size_of(run.mlx_yaml) or batch_size
        return MeasuredSpeed(per_iter * batch_size / ran_batch, run.name)
    return None


def _batch_size_of(mlx_yaml: Path) -> Optional[int]:
    import yaml

    try:
        value = (yaml.safe_load(mlx_yaml.read_text()) or {}).get("batch_size")
        return int(value) if value is not None else None
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return None
