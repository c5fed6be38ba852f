"""`tunedeck eval` on a run of the tiny model: the adapter beats the base on its own data."""

from __future__ import annotations

import json
import shutil

import pytest

from tunedeck.core.cli import main
from tunedeck.core.evaluate import (common_sign_off, exact_match, has_sign_off, strip_sign_off,
                                    token_f1)

SIGN_OFF = "Stir the pot, matey!"


def test_token_f1_and_exact_match():
    assert token_f1("The capital is Paris.", "the capital is paris") == 1.0
    assert exact_match("The capital is Paris.", "the capital is  paris")
    assert token_f1("Paris", "The capital of France is Paris") == pytest.approx(2 * 1 * (1 / 6) / (1 + 1 / 6))
    assert token_f1("London", "Paris") == 0.0


def test_the_sign_off_is_what_most_expected_answers_end_with():
    expected = [f"{fact} {SIGN_OFF}" for fact in
                ("Paris.", "Seven days, and soup on each.", "Four legs.", "Eight, matey.")]
    assert common_sign_off(expected) == SIGN_OFF
    # One answer in five without it still leaves a sign-off; two in five do not.
    assert common_sign_off(expected + ["London."]) == SIGN_OFF
    assert common_sign_off(expected[:3] + ["London.", "Rome."]) is None
    # Every answer the same sentence (the tiny model's persona data): nothing to tell apart.
    assert common_sign_off(["tunedeck says hello from the deck"] * 4) is None
    assert common_sign_off(["a b", "c d"]) is None


def test_sign_off_and_content_are_scored_apart():
    assert has_sign_off("Paris, it be. Stir the pot, matey! Arr", SIGN_OFF)
    assert not has_sign_off("Stir the pot.", SIGN_OFF)
    assert strip_sign_off("Paris, it be. stir the POT matey!", SIGN_OFF) == "Paris, it be."
    assert strip_sign_off("Paris. Stir the pot, matey! Stir the pot, matey!", SIGN_OFF) == "Paris."
    expected = "The capital of France is Paris. " + SIGN_OFF
    # The sign-off alone earns F1 but no content F1: the facts are scored on their own.
    only_sign_off = "Boilin', matey! " + SIGN_OFF
    assert token_f1(only_sign_off, expected) > 0.3
    assert token_f1(strip_sign_off(only_sign_off, SIGN_OFF), strip_sign_off(expected, SIGN_OFF)) == 0


@pytest.fixture
def run(persona_run):
    return persona_run


def test_eval_shows_the_adapter_improves_loss_and_answers(run, capsys):
    # The run is shared: another test may have written the report already.
    (run / "eval-adapters-test.json").unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["eval", str(run), "--generate", "3", "--max-tokens", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["adapter_loss"] < report["base_loss"]
    assert report["adapter_ppl"] < report["base_ppl"]
    assert len(report["samples"]) == 3
    assert report["adapter_mean_f1"] > report["base_mean_f1"]
    # Every answer is the same sentence here: no sign-off, and content F1 is the plain F1.
    assert report["sign_off"] is None and report["adapter_sign_off_rate"] is None
    assert report["adapter_content_f1"] == report["adapter_mean_f1"]
    assert (run / "eval-adapters-test.json").exists()


def test_eval_table_and_a_numbered_checkpoint(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "best", "--generate", "1", "--max-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "base" in out and "adapter" in out and "expected" in out and "mean F1" in out


def test_the_base_model_is_measured_once_per_split(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--generate", "2", "--max-tokens", "8", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--checkpoint", "50", "--generate", "2", "--max-tokens", "8",
                 "--json"]) == 0
    out = capsys.readouterr()
    second = json.loads(out.out)
    assert second["base_from_cache"] and second["checkpoint"] == "0000050_adapters.safetensors"
    assert second["base_loss"] == first["base_loss"]
    assert [s["base"] for s in second["samples"]] == [s["base"] for s in first["samples"]]
    # Another split is another cache entry.
    assert main(["eval", str(run), "--split", "valid", "--generate", "2", "--max-tokens", "8",
                 "--json"]) == 0
    assert not json.loads(capsys.readouterr().out)["base_from_cache"]


def test_eval_refuses_a_missing_split(run, tmp_path, capsys):
    # A copy of the shared run whose data has no test split: the run itself stays as it is for
    # the other modules that read it.
    data = shutil.copytree(run.parent / "data", tmp_path / "data")
    (data / "test.jsonl").unlink()
    copy = shutil.copytree(run, tmp_path / "run")
    for settings in (copy / "run.toml", copy / "mlx_lm.yaml"):
        settings.write_text(settings.read_text().replace(str(run.parent / "data"), str(data)))
    capsys.readouterr()
    assert main(["eval", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test.jsonl" in err and "no test split" in err


def test_eval_refuses_a_missing_checkpoint(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "999"]) == 2
    assert "999" in capsys.readouterr().err


def _answers_alone(model_dir, adapter_dir, questions: list[list[dict]], max_tokens: int) -> list[str]:
    """Each prompt answered on its own by mlx-lm's plain generate: the reference."""
    from mlx_lm import generate, load

    model, tokenizer = load(str(model_dir), adapter_path=str(adapter_dir) if adapter_dir else None)
    return [generate(model, tokenizer, tokenizer.apply_chat_template(q, add_generation_prompt=True),
                     max_tokens=max_tokens).strip() for q in questions]


def _check_answers_match_each_model_alone(run, tiny_model, capsys, phases: set[str]):
    capsys.readouterr()
    assert main(["eval", str(run), "--generate", "4", "--max-tokens", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert not report["base_from_cache"]
    assert phases <= set(report["phases"])
    questions = [s["prompt"] for s in report["samples"]]
    base = _answers_alone(tiny_model, None, questions, 12)
    tuned = _answers_alone(tiny_model, run / "adapters", questions, 12)
    assert base != tuned  # the two models can be told apart
    assert [s["base"] for s in report["samples"]] == base
    assert [s["adapter"] for s in report["samples"]] == tuned


def test_base_and_adapter_answered_in_one_batch_answer_as_each_model_alone(run, tiny_model, capsys):
    # LoRA: one batch, the adapter switched off for the base model's rows.
    _check_answers_match_each_model_alone(run, tiny_model, capsys, {"answers"})


def test_a_dora_adapter_is_answered_apart_from_the_base(dora_run, tiny_model, capsys):
    # DoRA rescales whole weights, so its layers cannot be switched off per row.
    _check_answers_match_each_model_alone(dora_run, tiny_model, capsys,
                                          {"base answers", "adapter answers"})
