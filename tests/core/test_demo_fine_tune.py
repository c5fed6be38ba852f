"""The demo's promise, end to end, as a user runs it: the shipped demo config trains the demo model
on the sample data, and `tunedeck eval` shows the persona learned (the sign-off in most answers)
and the facts kept (content F1 not below the base model's, Paris still the capital of France);
every checkpoint of the run answers in words.

On the fast path (float32 demo model, OpenBLAS) this takes about 2.5 minutes on 2 cores, so it runs
in `make test` (marked demo only; 2 min 19 s measured at load 1.5-2.5 with no cached base answers).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).with_name("tunedeck"))


def _env() -> dict:
    # What the console script gives every command at start (core.blas): the machine's fast BLAS.
    from tunedeck.core.blas import fast_blas_env

    return fast_blas_env(dict(os.environ))


def _eval(project: Path, *args: str) -> dict:
    done = subprocess.run([EXE, "eval", "runs/demo", "--json", *args], cwd=project,
                          capture_output=True, text=True, timeout=3000, env=_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.demo
@pytest.mark.timeout(1800)  # minutes of training and answering on a quiet machine; more under load
def test_the_demo_fine_tune_learns_the_persona_and_keeps_the_facts(tmp_path, demo_model,
                                                                   monkeypatch):
    from tests.conftest import DEMO_HOME

    monkeypatch.setenv("TUNEDECK_HOME", str(DEMO_HOME))  # where demo_model built the model
    project = tmp_path / "demo"
    made = subprocess.run([EXE, "demo", "--dir", str(project), "--no-open"], capture_output=True,
                          text=True)
    assert made.returncode == 0, made.stderr
    train = subprocess.run([EXE, "train", "tunedeck.toml", "--run-dir", "runs/demo"], cwd=project,
                           capture_output=True, text=True, timeout=3000, env=_env())
    assert train.returncode == 0, train.stderr

    report = _eval(project)
    assert report["sign_off"] == "Stir the pot, matey!"
    assert report["adapter_loss"] < report["base_loss"]
    assert report["adapter_sign_off_rate"] >= 0.8
    assert report["adapter_content_f1"] >= report["base_content_f1"]
    [france] = [s for s in report["samples"]
                if s["prompt"][-1]["content"] == "What is the capital of France?"]
    assert "Paris" in france["base"] and "Paris" in france["adapter"]

    # The checkpoints before the last, as a user opens them in Chat (the last is the adapter above).
    adapters = project / "runs" / "demo" / "adapters"
    checkpoints = sorted(adapters.glob("[0-9]*_adapters.safetensors"))
    assert [c.name for c in checkpoints] == [f"{i:07d}_adapters.safetensors" for i in (10, 20, 30)]
    for checkpoint in checkpoints[:-1]:
        chat = subprocess.run([EXE, "chat", "--model", "demo", "--adapter", str(checkpoint),
                               "--prompt", "What is the capital of France?", "--temp", "0",
                               "--max-tokens", "24"], capture_output=True, text=True, timeout=600,
                              env=_env())
        assert chat.returncode == 0, chat.stderr
        words = re.findall(r"[A-Za-z]{2,}", chat.stdout)
        assert len(words) >= 3, f"{checkpoint.name}: {chat.stdout!r}"
