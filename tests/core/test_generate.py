"""`tunedeck data generate`: questions and answers from the tiny model, in this process and as
the command a user runs; resumable after a hard kill; the quality report."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunedeck.core.data.answer_quality import CUT, EMPTY, normalized, quality_flags
from tunedeck.core.data.generate import question_lines
from tunedeck.core.data.model_sources import Reply
from tunedeck.core.data.prompts import prompt_key
from tunedeck.core.data.resumable_output import split_names

PROMPTS = ["What is the capital of France?", "How do birds fly?", "What is 2 + 2?",
           "Name a colour.", "What is gravity?", "Why is the sky blue?", "How do birds fly?"]


def write_prompts(path: Path, prompts=PROMPTS) -> Path:
    path.write_text("".join(p + "\n" for p in prompts), encoding="utf-8")
    return path


def rows_of(*paths: Path) -> list:
    rows = []
    for path in paths:
        if path.exists():
            raw = path.read_bytes()
            assert raw == b"" or raw.endswith(b"\n"), f"{path} ends in a half line"
            rows += [json.loads(line) for line in raw.decode().splitlines()]
    return rows


def asked(rows) -> list:
    return [row["messages"][-2]["content"] for row in rows]


def cli(*argv, timeout=300):
    return subprocess.run([sys.executable, "-c", "from tunedeck.core.cli import main; "
                           "import sys; sys.exit(main())", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout)


def test_answers_every_prompt_once_into_splits_and_a_rerun_adds_nothing(tunedeck, tmp_path,
                                                                        tiny_model):
    prompts = write_prompts(tmp_path / "prompts.txt")
    out = tmp_path / "data"
    args = ("data", "generate", "answers", "--prompts", prompts, "--model", tiny_model,
            "--out", out, "--max-tokens", "8", "--batch-size", "4", "--split", "60,20,20")
    code, stdout, err = tunedeck(*args)
    assert code == 0, stdout + err
    files = [out / f"{n}.jsonl" for n in ("train", "valid", "test")]
    rows = rows_of(*files)
    assert sorted(asked(rows)) == sorted(set(PROMPTS))     # the repeated prompt once
    assert [len(rows_of(f)) for f in files] == [4, 1, 1]
    for row in rows:
        assert row["messages"][-1]["role"] == "assistant"
    assert "1 repeated prompt answered once" in stdout
    assert "answers " in err and "/s" in err                  # progress with a rate
    code, stdout, _ = tunedeck("data", "check", out)
    assert code == 0, stdout

    before = [f.read_bytes() for f in files]
    code, stdout, _ = tunedeck(*args)
    assert code == 0
    assert "0 answers written; 6 from before" in stdout
    assert [f.read_bytes() for f in files] == before


def test_a_half_line_left_by_a_kill_is_repaired_and_its_prompt_answered(tunedeck, tmp_path,
                                                                       tiny_model):
    prompts = write_prompts(tmp_path / "prompts.txt")
    out = tmp_path / "answers.jsonl"
    args = ("data", "generate", "answers", "--prompts", prompts, "--model", tiny_model,
            "--out", out, "--max-tokens", "8")
    assert tunedeck(*args)[0] == 0
    whole = out.read_bytes().splitlines(keepends=True)
    # As a kill in the middle of the last write leaves it: two rows whole, the third cut.
    out.write_bytes(b"".join(whole[:2]) + whole[2][:25])
    code, stdout, _ = tunedeck(*args)
    assert code == 0, stdout
    rows = rows_of(out)
    assert sorted(asked(rows)) == sorted(set(PROMPTS))
    assert "4 answers written; 2 from before" in stdout


def test_sigkill_mid_run_then_the_same_command_answers_each_prompt_exactly_once(tmp_path,
                                                                                tiny_model):
    many = [f"Question number {i}: what comes after {i}?" for i in range(1, 61)]
    prompts = write_prompts(tmp_path / "prompts.jsonl",
                            [json.dumps({"prompt": p}) for p in many])
    out = tmp_path / "data"
    args = ["data", "generate", "answers", "--prompts", prompts, "--model", tiny_model,
            "--out", out, "--max-tokens", "24", "--batch-size", "2"]
    proc = subprocess.Popen([sys.executable, "-c", "from tunedeck.core.cli import main; "
                             "import sys; sys.exit(main())", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    train = out / "train.jsonl"
    deadline = time.monotonic() + 240
    while not (train.exists() and train.read_bytes().count(b"\n") >= 4):
        assert proc.poll() is None, "finished before it could be killed"
        assert time.monotonic() < deadline, "no rows written"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = rows_of(*[p for p in out.glob("*.jsonl")]) if train.read_bytes().endswith(b"\n") \
        else None
    assert partial is None or len(partial) < len(many)
    done = cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = rows_of(*out.glob("*.jsonl"))
    assert sorted(asked(rows)) == sorted(many)                # each exactly once


def test_drop_flagged_leaves_flagged_answers_out_and_does_not_ask_again(tunedeck, tmp_path,
                                                                       tiny_model):
    prompts = write_prompts(tmp_path / "prompts.txt")
    out = tmp_path / "answers.jsonl"
    # Two tokens: every answer is cut at max_tokens.
    args = ("data", "generate", "answers", "--prompts", prompts, "--model", tiny_model,
            "--out", out, "--max-tokens", "2", "--drop-flagged")
    code, stdout, _ = tunedeck(*args)
    assert code == 0, stdout
    assert not out.exists() or rows_of(out) == []
    assert "6 flagged and left out" in stdout
    assert stdout.count("cut at max_tokens") == 6 and stdout.count("(left out)") == 6
    code, stdout, _ = tunedeck(*args)
    assert "0 answers written; 6 from before" in stdout


def test_the_report_flags_cut_answers_by_line(tunedeck, tmp_path, tiny_model):
    prompts = write_prompts(tmp_path / "prompts.txt", PROMPTS[:3])
    out = tmp_path / "answers.jsonl"
    code, stdout, _ = tunedeck("data", "generate", "answers", "--prompts", prompts, "--model",
                               tiny_model, "--out", out, "--max-tokens", "2")
    assert code == 0
    assert [line for line in stdout.splitlines() if "warning" in line] == [
        f"{out}:{n}: warning: cut at max_tokens" for n in (1, 2, 3)]


def test_quality_flags():
    seen = {}
    assert quality_flags("What is love?", Reply("  ", "stop"), seen, 1) == [EMPTY]
    assert quality_flags("What is love?", Reply("Love is a feeling.", "length"), seen, 2) == [CUT]
    assert quality_flags("What is love?", Reply("love is a feeling", "stop"), seen, 3) == [
        "duplicate answer (as line 2)"]
    script = quality_flags("What is the capital of France?",
                           Reply("Столица Франции — Париж.", "stop"), seen, 4)
    assert script == ["answer in another script than its prompt (cyrillic for latin)"]
    assert quality_flags("Bonjour, comment ça va?", Reply("Très bien, merci beaucoup!", "stop"),
                         seen, 5) == []


def test_near_duplicate_questions_are_one_question():
    assert normalized("1. What is  Gravity?") == normalized("what is gravity") \
        == normalized("- WHAT IS GRAVITY!")
    assert question_lines("Here are three questions:\n1. What is X?\n2) Why Y?\n\n- How Z?") \
        == ["What is X?", "Why Y?", "How Z?"]
    assert question_lines("Mars is red.\nWhy is Mars red?\nThe answer is 10.") == [
        "Why is Mars red?"]
    assert question_lines("Tell me about Mars\nDescribe Venus") == [
        "Tell me about Mars", "Describe Venus"]


def test_splits_hold_their_shares_at_any_length():
    names = split_names(20, (80, 10, 10))
    assert (names.count("train"), names.count("valid"), names.count("test")) == (16, 2, 2)
    assert split_names(10, (80, 10, 10)) == names[:10]        # a longer input assigns alike


def test_prompt_keys_follow_the_conversation():
    user = {"role": "user", "content": "hi"}
    assert prompt_key([user]) == prompt_key([dict(user)])
    assert prompt_key([user]) != prompt_key([{"role": "system", "content": "be brief"}, user])


def test_questions_are_distinct_and_a_rerun_tops_them_up(tunedeck, tmp_path, tiny_model):
    out = tmp_path / "questions.jsonl"
    args = ["data", "generate", "questions", "--topic", "birds", "--model", tiny_model,
            "--out", out, "--max-tokens", "40", "--batch-size", "4"]
    code, stdout, _ = tunedeck(*args, "--count", "6")
    assert code == 0, stdout
    first = [json.loads(line)["prompt"] for line in out.read_text().splitlines()]
    assert len(first) == 6
    code, stdout, _ = tunedeck(*args, "--count", "10")
    assert code == 0, stdout
    questions = [json.loads(line)["prompt"] for line in out.read_text().splitlines()]
    assert questions[:6] == first and len(questions) == 10
    assert len({normalized(q) for q in questions}) == 10
    assert "(4 new, 6 from before" in stdout
    # The questions are prompts for the answers command as they are.
    code, stdout, _ = tunedeck("data", "generate", "answers", "--prompts", out, "--model",
                               tiny_model, "--out", tmp_path / "qa.jsonl", "--max-tokens", "4")
    assert code == 0 and "10 answers written" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--out", "x.jsonl"], "name a source: --model M (a local model) or --endpoint URL"),
    (["--out", "x.jsonl", "--endpoint", "localhost:8080"], "not an http:// or https:// URL"),
    (["--out", "x.jsonl", "--endpoint", "http://127.0.0.1:1/v1", "--api-key-env",
      "TUNEDECK_TEST_NO_SUCH_KEY"], "that environment variable is not set"),
    (["--out", "x.jsonl", "--split", "80,10,10", "--model", "demo"], "give a directory"),
])
def test_bad_options_get_one_line_and_exit_2(tunedeck, tmp_path, monkeypatch, argv, message):
    prompts = write_prompts(tmp_path / "prompts.txt")
    monkeypatch.chdir(tmp_path)
    code, out, err = tunedeck("data", "generate", "answers", "--prompts", prompts, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_bad_prompt_line_is_named(tunedeck, tmp_path, tiny_model):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"answer": "no prompt"}\n')
    code, _, err = tunedeck("data", "generate", "answers", "--prompts", prompts, "--model",
                            tiny_model, "--out", tmp_path / "a.jsonl")
    assert code == 2
    assert f"{prompts}:2: expected a \"prompt\" string" in err
