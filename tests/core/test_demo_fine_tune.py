"""The demo's promise, end to end: a short LoRA run of the demo model on the shipped sample data
lowers the test loss and moves the answers towards the expected completions (`tunedeck eval`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).with_name("tunedeck"))


@pytest.mark.demo
@pytest.mark.fine_tune
def test_the_demo_fine_tune_beats_the_base_model(tmp_path, demo_model, monkeypatch):
    from tests.conftest import DEMO_HOME

    monkeypatch.setenv("TUNEDECK_HOME", str(DEMO_HOME))  # where demo_model built the model
    project = tmp_path / "demo"
    run = subprocess.run([EXE, "demo", "--dir", str(project), "--no-open"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    train = subprocess.run([EXE, "train", "tunedeck.toml", "--run-dir", "runs/demo"], cwd=project,
                           capture_output=True, text=True, timeout=3000)
    assert train.returncode == 0, train.stderr
    evaluated = subprocess.run([EXE, "eval", "runs/demo", "--generate", "3", "--max-tokens", "32",
                                "--json"], cwd=project, capture_output=True, text=True, timeout=3000)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["adapter_loss"] < report["base_loss"]
    assert report["adapter_mean_f1"] > report["base_mean_f1"]
