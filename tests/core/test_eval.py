"""`tunedeck eval` on a run of the tiny model: the adapter beats the base on its own data."""

from __future__ import annotations

import json

import pytest

from tests.core.runhelpers import write_config
from tests.tinymodel import write_persona_dataset
from tunedeck.core.cli import main
from tunedeck.core.evaluate import exact_match, token_f1


def test_token_f1_and_exact_match():
    assert token_f1("The capital is Paris.", "the capital is paris") == 1.0
    assert exact_match("The capital is Paris.", "the capital is  paris")
    assert token_f1("Paris", "The capital of France is Paris") == pytest.approx(2 * 1 * (1 / 6) / (1 + 1 / 6))
    assert token_f1("London", "Paris") == 0.0


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("eval")
    data = write_persona_dataset(root / "data")
    cfg = write_config(root / "cfg.toml", tiny_model, data, iters=100, save_every=50, steps_per_eval=50)
    assert main(["train", str(cfg), "--run-dir", str(root / "run")]) == 0
    return root / "run"


def test_eval_shows_the_adapter_improves_loss_and_answers(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--generate", "3", "--max-tokens", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["adapter_loss"] < report["base_loss"]
    assert report["adapter_ppl"] < report["base_ppl"]
    assert len(report["samples"]) == 3
    assert report["adapter_mean_f1"] > report["base_mean_f1"]
    assert (run / "eval-adapters-test.json").exists()


def test_eval_table_and_a_numbered_checkpoint(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "best", "--generate", "1", "--max-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "base" in out and "adapter" in out and "expected" in out and "mean F1" in out


def test_eval_refuses_a_missing_split(run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "train", "--checkpoint", "999"]) == 2
    assert "999" in capsys.readouterr().err
