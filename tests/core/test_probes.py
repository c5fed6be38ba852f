"""Answer checks on real checkpoints of the tiny model: degenerate answers and forgetting."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
from pathlib import Path

from tests.core.runhelpers import wait_for, write_config
from tests.core.test_health_runs import write_chat_data
from tests.tinymodel import PERSONA_ANSWER, QUESTIONS
from tunedeck.core import checkpoint_checks, probes
from tunedeck.core.cli import main
from tunedeck.core.events import read_events
from tunedeck.core.rundir import RunDirectory
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
    saved = json.loads((run_dir / "adapters" / "0000040_answers.json").read_text())
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


# -- answer checks at checkpoints, chosen in the form (answer_checks) -----------------------------

def _check_processes(run_dir: Path) -> list[int]:
    """The pids of the answer-check processes working on ``run_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tunedeck.core.probes" in argv and str(run_dir).encode() in argv:
            pids.append(int(proc.name))
    return pids


def _alive(pid: int) -> bool:
    """Not yet gone, nor a zombie waiting to be reaped (a process that is exiting already has
    an empty command line, so _check_processes no longer lists it)."""
    try:
        return b"(zombie)" not in Path(f"/proc/{pid}/status").read_bytes()
    except OSError:
        return False


def test_a_run_with_answer_checks_checks_every_checkpoint_before_it_is_finished(
        tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=20, save_every=10,
                       answer_checks=True)
    run_dir = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0

    checks = probes.recorded_checks(run_dir / "adapters")
    # Checkpoint 20 came while 10 was being checked (or after): it waited, it was not skipped.
    assert sorted(checks) == [10, 20]
    assert all(c.seconds > 0 for c in checks.values())
    # The run is reported finished only once its last check has ended, and leaves no check behind.
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished"
    assert (run_dir / "adapters" / "0000020_answers.json").stat().st_mtime <= status["ended_at"]
    assert _check_processes(run_dir) == []
    record = read_events(run_dir / "metrics.jsonl")
    end = next(i for i, e in enumerate(record) if e.kind == "end")
    checked = [i for i, e in enumerate(record) if e.kind == "health" and e.issue in ("degenerate", "forgetting")]
    assert all(i < end for i in checked)
    # Its findings carry what the check cost, in the event's own line.
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        if line["kind"] == "health" and line["issue"] in ("degenerate", "forgetting"):
            assert line["seconds"] == checks[line["iter"]].seconds
    log = (run_dir / "train.log").read_text()
    assert "answer check of checkpoint 10:" in log and "answer check of checkpoint 20:" in log


def test_a_run_without_answer_checks_checks_nothing(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=20, save_every=10)
    run_dir = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0
    assert probes.recorded_checks(run_dir / "adapters") == {}
    assert "answer check" not in (run_dir / "train.log").read_text()


def test_a_check_never_outlives_its_run_killed_or_stopped(tmp_path, tiny_model, persona_data):
    for ending in ("kill -9", "stop"):
        cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=2000, save_every=5,
                           steps_per_eval=1000, answer_checks=True)
        run_dir = tmp_path / ending.replace(" ", "")
        assert main(["train", str(cfg), "--run-dir", str(run_dir), "--detach"]) == 0
        checking = wait_for(lambda: _check_processes(run_dir), what="an answer check to start")
        if ending == "kill -9":
            trainer = json.loads((run_dir / "status.json").read_text())["pid"]
            os.kill(trainer, signal.SIGKILL)
        else:
            assert main(["stop", str(run_dir)]) == 0
        wait_for(lambda: not any(_alive(pid) for pid in checking), what=f"the check to end after {ending}")
        wait_for(lambda: not RunDirectory(run_dir).is_locked(), what="the run to end")
        assert _check_processes(run_dir) == []
        if ending == "stop":
            assert RunDirectory(run_dir).state() == "stopped"
            assert "stopped with the run" in (run_dir / "train.log").read_text()


def test_the_newest_checkpoint_waits_and_an_older_waiting_one_is_skipped(tmp_path, monkeypatch, capsys):
    started = []

    class Held:
        """A check process that ends when the test says so."""

        def __init__(self, argv, **_):
            started.append(int(argv[4]))
            self.done = threading.Event()
            held.append(self)

        def wait(self):
            self.done.wait()

        def terminate(self):
            self.done.set()

        kill = terminate

    held: list = []
    monkeypatch.setattr(checkpoint_checks.subprocess, "Popen", Held)
    checks = checkpoint_checks.CheckpointChecks(tmp_path)
    checks.checkpoint_saved(10)
    checks.checkpoint_saved(20)
    checks.checkpoint_saved(30)  # 20 would be stale by the time it ran
    assert started == [10] and checks.waiting == 30
    assert "answer check of checkpoint 20 skipped" in capsys.readouterr().out
    held[0].done.set()
    wait_for(lambda: started == [10, 30], what="the waiting check to start")
    checks.checkpoint_saved(40)
    checks.close(wait=False)  # a stopped run: the running check ends, the waiting one is dropped
    assert started == [10, 30] and checks.running is None and checks.waiting is None
    checks.checkpoint_saved(50)
    assert started == [10, 30]
