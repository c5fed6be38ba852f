"""Projects on the tiny model, and runs really trained on it (TUI and end-to-end tests)."""

from __future__ import annotations

import time
from pathlib import Path

import tomli_w

from tests.conftest import TINY_LEARNING_RATE, TINY_LORA
from tests.tinymodel import write_persona_dataset


def write_project(root: Path, model: Path, **overrides) -> Path:
    """A project directory: tunedeck.toml, data/ (the persona set) and, later, runs/."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "data").exists():
        write_persona_dataset(root / "data")
    config = {
        "name": "tiny", "model": str(model), "data": "data", "num_layers": 2, "batch_size": 4,
        "iters": 40, "learning_rate": TINY_LEARNING_RATE, "steps_per_report": 5,
        "steps_per_eval": 10, "save_every": 10, "val_batches": 2, "max_seq_length": 128,
        "lora_parameters": dict(TINY_LORA),
    }
    config.update(overrides)
    # An override of None leaves the key out (iters=None with epochs set).
    config = {key: value for key, value in config.items() if value is not None}
    (root / "tunedeck.toml").write_text(tomli_w.dumps(config))
    return root


def train_to_the_end(project: Path, timeout: float = 180.0):
    """A real run of the project's config, started as the app starts one, waited for."""
    from tunedeck.core.config import TrainConfig
    from tunedeck.core.runs import start_run

    config = TrainConfig.from_toml(project / "tunedeck.toml").resolve_paths(project)
    run, process = start_run(config, root=project / "runs")
    process.wait(timeout=timeout)
    deadline = time.monotonic() + 10
    while run.state() not in ("finished", "failed", "stopped") and time.monotonic() < deadline:
        time.sleep(0.05)  # the status file is written as the process exits
    assert run.state() == "finished", run.train_log.read_text()[-2000:]
    return run


# A project file as people write them: comments, a relative model path, keys in their order.
COMMENTED_CONFIG = """\
# Teach the tiny model one answer. Comments like this one are the user's own.
name = "tiny"
model = "models/tiny"  # a local model, relative to the project
data = "data"
num_layers = 2
batch_size = 4
iters = 20
learning_rate = 1e-3  # high: the tiny model learns fast
steps_per_report = 5
# A short validation, often.
steps_per_eval = 10
save_every = 10
val_batches = 2
max_seq_length = 128

[lora_parameters]
rank = 8
scale = 20.0  # alpha / rank in other tools
dropout = 0.0
keys = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
"""


def write_commented_project(root: Path, model: Path) -> Path:
    """A project whose tunedeck.toml has comments and relative paths (``COMMENTED_CONFIG``)."""
    root.mkdir(parents=True, exist_ok=True)
    write_persona_dataset(root / "data")
    (root / "models").mkdir()
    (root / "models" / "tiny").symlink_to(model, target_is_directory=True)
    (root / "tunedeck.toml").write_text(COMMENTED_CONFIG)
    return root
