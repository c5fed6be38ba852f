"""Where a run's health findings show outside the app: ``tunedeck runs`` and the checkpoint
index (its health column, and "best" never being a checkpoint whose answers are degenerate).

One real run of the tiny model at a learning rate of 1.0 diverges (see test_health_runs.py);
each test works on its own copy of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.tinymodel import write_persona_dataset
from tests.core.runhelpers import write_config
from tunedeck.core.checkpoints import checkpoint_index, pick_checkpoint
from tunedeck.core.cli import main
from tunedeck.core.events import EventWriter, Health, read_events
from tunedeck.core.rundir import RunDirectory


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory, tiny_model) -> Path:
    base = tmp_path_factory.mktemp("diverged")
    data = write_persona_dataset(base / "data")
    cfg = write_config(base / "cfg.toml", tiny_model, data, iters=40, learning_rate=1.0)
    run_dir = base / "runs" / "diverged"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture
def run_copy(diverged_run, tmp_path) -> Path:
    copy = tmp_path / "runs" / diverged_run.name
    shutil.copytree(diverged_run, copy)
    return copy


def _findings(run_dir: Path) -> list:
    return [e for e in read_events(run_dir / "metrics.jsonl") if isinstance(e, Health)]


def test_runs_prints_the_newest_finding_under_the_run(run_copy, capsys):
    newest = _findings(run_copy)[-1]
    assert newest.issue == "diverging"
    assert main(["runs", "--root", str(run_copy.parent)]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(k for k, line in enumerate(lines) if line.startswith("diverged"))
    assert lines[at + 1] == (f"  iter {newest.iter}  BAD diverging: {newest.evidence} — "
                             f"{newest.advice}")

    assert main(["runs", "--root", str(run_copy.parent), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["health"] == {"iter": newest.iter, "issue": "diverging", "severity": "bad",
                                "evidence": newest.evidence, "advice": newest.advice}


def test_a_run_without_findings_has_no_health_line(run_copy, capsys):
    lines = (run_copy / "metrics.jsonl").read_text().splitlines()
    (run_copy / "metrics.jsonl").write_text(
        "".join(line + "\n" for line in lines if '"kind":"health"' not in line))
    assert main(["runs", "--root", str(run_copy.parent)]) == 0
    out = capsys.readouterr().out
    assert "diverging" not in out and len(out.splitlines()) == 2
    assert main(["runs", "--root", str(run_copy.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["health"] is None


def _record(run_dir: Path, *findings: Health) -> None:
    """Findings appended the way the answer checks (core.probes) write them."""
    with EventWriter(run_dir / "metrics.jsonl") as writer:
        for finding in findings:
            writer.append(finding)


def test_checkpoint_health_and_best_skips_a_degenerate_checkpoint(run_copy):
    run = RunDirectory(run_copy)
    before = checkpoint_index(run)
    assert len(before) >= 3 and all(c.health == "ok" for c in before)
    best = next(c for c in before if c.best)
    other = next(c for c in before if c is not best)
    _record(run_copy,
            Health(iter=best.iteration, issue="degenerate", severity="bad",
                   evidence="3 of 3 answers degenerate", advice="stop earlier"),
            Health(iter=other.iteration, issue="forgetting", severity="warn",
                   evidence="1 of 3 general prompts forgotten", advice="mix in general data"))
    after = {c.iteration: c for c in checkpoint_index(run)}
    assert after[best.iteration].health == "bad"
    assert after[best.iteration].health_label == "bad: degenerate: 3 of 3 answers degenerate"
    assert not after[best.iteration].best
    assert after[other.iteration].health == "warn"
    assert after[other.iteration].health_reason == "forgetting: 1 of 3 general prompts forgotten"
    # The run's loss findings (diverging) are about the run, not about one checkpoint's answers.
    assert all(c.health == "ok" for i, c in after.items() if i not in (best.iteration, other.iteration))
    # The best is now the lowest val loss among the others, and `--checkpoint best` follows it.
    rest = [c for i, c in after.items() if i != best.iteration and c.val_loss is not None]
    new_best = min(rest, key=lambda c: (c.val_loss, c.iteration))
    assert new_best.best and pick_checkpoint(run, "best").iteration == new_best.iteration
