"""Helpers for tests that really train the tiny model through tunedeck's commands."""

from __future__ import annotations

import json
import time
from pathlib import Path

import tomli_w

from tests.conftest import TINY_LEARNING_RATE, TINY_LORA


def write_config(path: Path, model: Path, data: Path, **overrides) -> Path:
    config = {
        "name": "tiny",
        "model": str(model),
        "data": str(data),
        "num_layers": 2,
        "batch_size": 4,
        "iters": 30,
        "learning_rate": TINY_LEARNING_RATE,
        "steps_per_report": 5,
        "steps_per_eval": 10,
        "save_every": 10,
        "val_batches": 2,
        "mask_prompt": True,
        "lora_parameters": dict(TINY_LORA),
    }
    config.update(overrides)
    path.write_text(tomli_w.dumps(config))
    return path


def events(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    """Poll a condition that depends on another process (no event to await across processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def like_a_terminal() -> None:
    """``preexec_fn`` for a child the test stops with SIGINT, as Ctrl-C in a terminal does.

    A suite started in the background by a non-interactive shell (``make test &``) inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler in its children: the
    Ctrl-C a test sends would never arrive. A terminal's foreground process has it at its default.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
