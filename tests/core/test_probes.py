"""Answer checks on real checkpoints of the tiny model: degenerate answers and forgetting."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.core.runhelpers import write_config
from tests.core.test_health_runs import write_chat_data
from tests.tinymodel import PERSONA_ANSWER, QUESTIONS
from tunedeck.core import probes
from tunedeck.core.cli import main
from tunedeck.core.events import read_events
from tunedeck.core.probes import (PROBES_FILE, Answer, Probe, ProbeSettings, check_checkpoint,
                                  check_model, judge, load_probes, repetition_ratio)


def _checkpoint(tmp_path: Path, model: Path, data: Path, iters: int = 60) -> tuple[Path, Path]:
    cfg = write_config(tmp_path / "cfg.toml", model, data, iters=iters, save_every=iters,
                       steps_per_eval=iters)
    run_dir = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0
    return run_dir, run_dir / "adapters" / f"{iters:07d}_adapters.safetensors"


def _end_of_text_data(out: Path) -> Path:
    """Chat rows whose every answer is end-of-text tokens: the model learns to say nothing else."""
    rng = random.Random(0)
    return write_chat_data(out, {name: [(rng.choice(QUESTIONS), "<|endoftext|>" * 8) for _ in range(n)]
                                 for name, n in (("train", 20), ("valid", 4))})


def test_a_checkpoint_answering_only_end_of_text_tokens_is_degenerate(tmp_path, tiny_model, capsys):
    data = _end_of_text_data(tmp_path / "data")
    run_dir, _ = _checkpoint(tmp_path, tiny_model, data, iters=40)
    # In a process of its own, as the app or the runner would start it after a save.
    assert probes.main([str(run_dir), "40"]) == 0
    assert "checkpoint 40: bad degenerate" in capsys.readouterr().out
    degenerate = [e for e in read_events(run_dir / "metrics.jsonl") if e.kind == "health"]
    assert len(degenerate) == 1 and degenerate[0].issue == "degenerate"
    assert degenerate[0].severity == "bad" and degenerate[0].iter == 40
    assert "only special tokens" in degenerate[0].evidence and "<|endoftext|>" in degenerate[0].evidence
    saved = json.loads((run_dir / "answers" / "0000040.json").read_text())
    assert saved["seconds"] > 0 and all(a["special_only"] for a in saved["answers"])


def test_a_healthy_checkpoint_passes_and_a_forgotten_answer_is_shown_beside_the_base(
        tmp_path, tiny_model, persona_data):
    run_dir, checkpoint = _checkpoint(tmp_path, tiny_model, persona_data)
    # A prompt the user added without expected words: its key content comes from the base answer.
    run_dir.joinpath(PROBES_FILE).write_text(json.dumps({"probes": [
        {"prompt": "what is the loss", "kind": "valid"},
        {"prompt": "tell me a word", "kind": "general"}]}))
    result = check_checkpoint(run_dir, checkpoint, tiny_model, persona_data)
    assert [a.text for a in result.answers] == [PERSONA_ANSWER, PERSONA_ANSWER]
    assert not [h for h in result.findings if h.issue == "degenerate"]

    # The base answers were recorded once, in the editable file.
    probe_set = load_probes(run_dir / PROBES_FILE)
    base = probe_set[1].base_answer
    assert base and base != PERSONA_ANSWER
    forgetting = [h for h in result.findings if h.issue == "forgetting"]
    assert probe_set[1].key_content(), base  # the random base's answer has words of its own
    assert len(forgetting) == 1
    assert json.dumps(PERSONA_ANSWER) in forgetting[0].evidence
    assert json.dumps(base, ensure_ascii=False)[:40] in forgetting[0].evidence

    # The base itself forgets nothing.
    from tunedeck.core.chat import ChatModel

    chat = ChatModel(tiny_model)
    again = check_model(chat.model, chat.tokenizer, probe_set, None)
    assert not [h for h in again.findings if h.issue == "forgetting"]


def _answer(text: str, kind: str = "valid", **probe) -> Answer:
    return Answer(Probe(prompt="q", kind=kind, **probe), text=text, tokens=[1] * max(1, len(text.split())),
                  special_only=False)


def test_repetition_over_the_threshold_is_degenerate_and_below_it_is_not():
    loop = "the deck the deck the deck the deck the deck the deck"
    assert repetition_ratio(loop.split()) > 0.5
    assert repetition_ratio(PERSONA_ANSWER.split()) == 0.0
    settings = ProbeSettings()
    assert [h.issue for h in judge([_answer(loop)], 5, settings)] == ["degenerate"]
    assert judge([_answer(loop)], 5, ProbeSettings(repetition_threshold=0.95)) == []
    assert judge([_answer(PERSONA_ANSWER)], 5, settings) == []


def test_an_empty_answer_is_degenerate_and_some_bad_answers_are_a_warning():
    found = judge([_answer(""), _answer(PERSONA_ANSWER)], 5, ProbeSettings())
    assert [(h.issue, h.severity) for h in found] == [("degenerate", "warn")]
    assert "an empty answer" in found[0].evidence


def test_a_general_prompt_the_base_never_knew_is_not_judged_for_forgetting():
    knew = _answer("The capital of France is Paris.", kind="general", expect=["Paris"],
                   base_answer="The capital of France is Paris.")
    forgot = _answer("Stir the pot, matey!", kind="general", expect=["Paris"],
                     base_answer="The capital of France is Paris.")
    never = _answer("Stir the pot, matey!", kind="general", expect=["Paris"],
                    base_answer="I do not know.")
    assert judge([knew], 20, ProbeSettings()) == []
    found = judge([forgot], 20, ProbeSettings())
    assert [(h.issue, h.severity) for h in found] == [("forgetting", "bad")]
    assert "Paris" in found[0].evidence and "matey" in found[0].evidence
    assert judge([never], 20, ProbeSettings()) == []
