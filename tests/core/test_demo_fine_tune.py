"""The demo's promise, end to end, as a user runs it: the shipped demo config trains the demo model
on the sample data, and `tunedeck eval` shows the persona learned (the sign-off in most answers)
and the facts kept (content F1 not below the base model's, Paris still the capital of France);
every checkpoint of the run answers in words."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).with_name("tunedeck"))


def _eval(project: Path, *args: str) -> dict:
    done = subprocess.run([EXE, "eval", "runs/demo", "--json", *args], cwd=project,
                          capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.demo
@pytest.mark.fine_tune
def test_the_demo_fine_tune_learns_the_persona_and_keeps_the_facts(tmp_path, demo_model,
                                                                   monkeypatch):
    from tests.conftest import DEMO_HOME

    monkeypatch.setenv("TUNEDECK_HOME", str(DEMO_HOME))  # where demo_model built the model
    project = tmp_path / "demo"
    made = subprocess.run([EXE, "demo", "--dir", str(project), "--no-open"], capture_output=True,
                          text=True)
    assert made.returncode == 0, made.stderr
    train = subprocess.run([EXE, "train", "tunedeck.toml", "--run-dir", "runs/demo"], cwd=project,
                           capture_output=True, text=True, timeout=3000)
    assert train.returncode == 0, train.stderr

    report = _eval(project)
    assert report["sign_off"] == "Stir the pot, matey!"
    assert report["adapter_loss"] < report["base_loss"]
    assert report["adapter_sign_off_rate"] >= 0.8
    assert report["adapter_content_f1"] >= report["base_content_f1"]
    [france] = [s for s in report["samples"]
                if s["prompt"][-1]["content"] == "What is the capital of France?"]
    assert "Paris" in france["base"] and "Paris" in france["adapter"]

    checkpoints = sorted((project / "runs" / "demo" / "adapters").glob("[0-9]*_adapters.safetensors"))
    assert len(checkpoints) >= 2
    for checkpoint in checkpoints:
        iteration = str(int(checkpoint.name.split("_")[0]))
        answers = _eval(project, "--checkpoint", iteration, "--generate", "3", "--max-tokens", "24")
        for sample in answers["samples"]:
            words = re.findall(r"[A-Za-z]{2,}", sample["adapter"])
            assert len(words) >= 3, f"checkpoint {iteration}: {sample['adapter']!r}"
