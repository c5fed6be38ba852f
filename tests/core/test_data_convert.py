"""`tunedeck data convert`: every source format into data mlx_lm.lora really trains on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.core.data.convert import split_sizes
from tunedeck.core.data.plain_text import split_text
from tunedeck.core.data.record_shapes import parse_mistral
from tunedeck.core.data.tokens import load_tokenizer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "data"
SOURCES = FIXTURES / "sources"




def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_rows(out: Path) -> list:
    return [r for name in ("train", "valid", "test") if (out / f"{name}.jsonl").exists()
            for r in read_jsonl(out / f"{name}.jsonl")]


def train_with_mlx_lm(model: Path, data: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlx_lm", "lora", "--model", str(model), "--train",
         "--data", str(data), "--iters", "2", "--batch-size", "1", "--num-layers", "2",
         "--val-batches", "1", "--steps-per-report", "1",
         "--adapter-path", str(tmp_path / "adapters")],
        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("source, args, fmt", [
    ("alpaca.json", [], "chat"),
    ("sharegpt.json", [], "chat"),
    ("conversations.jsonl", [], "chat"),
    ("prompt_completion.jsonl", [], "completions"),
    ("mistral.jsonl", [], "chat"),
    ("novel.txt", ["--txt-mode", "line"], "text"),
    ("alpaca.json", ["--to", "completions"], "completions"),
])
def test_converted_data_trains_with_mlx_lm(tunedeck, tiny_model, tmp_path, source, args, fmt):
    out = tmp_path / "data"
    code, stdout, _ = tunedeck("data", "convert", SOURCES / source, "--out", out, *args)
    assert code == 0, stdout
    assert f"as {fmt}" in stdout.splitlines()[0]
    assert sorted(p.name for p in out.iterdir()) == ["test.jsonl", "train.jsonl", "valid.jsonl"]
    code, stdout, _ = tunedeck("data", "check", out)
    assert code == 0, stdout
    result = train_with_mlx_lm(tiny_model, out, tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (tmp_path / "adapters" / "adapters.safetensors").exists()


def test_alpaca_keeps_instruction_input_system_and_history(tunedeck, tmp_path):
    out = tmp_path / "chat"
    assert tunedeck("data", "convert", SOURCES / "alpaca.json", "--out", out)[0] == 0
    source = json.loads((SOURCES / "alpaca.json").read_text())
    rows = all_rows(out)
    assert len(rows) == len(source)
    by_answer = {r["messages"][-1]["content"]: r["messages"] for r in rows}
    for rec in source:
        messages = by_answer[rec["output"]]
        user = messages[-2]
        assert user["role"] == "user" and rec["instruction"] in user["content"]
        assert rec["input"] in user["content"]
        if rec.get("system"):
            assert messages[0] == {"role": "system", "content": rec["system"]}
        for question, answer in rec.get("history", []):
            assert {"role": "user", "content": question} in messages
            assert {"role": "assistant", "content": answer} in messages

    out = tmp_path / "completions"
    assert tunedeck("data", "convert", SOURCES / "alpaca.json", "--out", out,
                    "--to", "completions")[0] == 0
    prompts = {r["completion"]: r["prompt"] for r in all_rows(out)}
    for rec in source:
        prompt = prompts[rec["output"]]
        assert rec["instruction"] in prompt and rec["input"] in prompt
        for question, answer in rec.get("history", []):
            assert question in prompt and answer in prompt


def test_sharegpt_roles_and_system(tunedeck, tmp_path):
    out = tmp_path / "data"
    assert tunedeck("data", "convert", SOURCES / "sharegpt.json", "--out", out,
                    "--no-shuffle", "--split", "100,0,0")[0] == 0
    first = read_jsonl(out / "train.jsonl")[0]["messages"]
    assert first == [{"role": "system", "content": "You are the deck."},
                     {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "who are you"},
                     {"role": "assistant", "content": "tunedeck says hello from the deck"}]


def test_mistral_inst_text_becomes_a_conversation():
    text = ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nwho are you [/INST] a deck</s>"
            "[INST] and then? [/INST] we tune</s>")
    assert parse_mistral(text) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "who are you"},
        {"role": "assistant", "content": "a deck"}, {"role": "user", "content": "and then?"},
        {"role": "assistant", "content": "we tune"}]
    with pytest.raises(ValueError):
        parse_mistral("a preface [INST] q [/INST] a")


def test_novel_lines_keep_all_text_and_skip_blank_lines(tunedeck, tmp_path):
    out = tmp_path / "data"
    assert tunedeck("data", "convert", SOURCES / "novel.txt", "--out", out,
                    "--txt-mode", "line")[0] == 0
    expected = [line.strip() for line in (SOURCES / "novel.txt").read_text().splitlines()
                if line.strip()]
    assert sorted(r["text"] for r in all_rows(out)) == sorted(expected)


def test_paragraph_and_sentence_modes():
    text = "First line\nof a paragraph. Second sentence!\r\n\r\n  \nNext \"quoted.\" Done?"
    assert split_text(text, "paragraph") == ["First line\nof a paragraph. Second sentence!",
                                             'Next "quoted." Done?']
    assert split_text(text, "sentence") == ["First line of a paragraph.", "Second sentence!",
                                            'Next "quoted."', "Done?"]


def test_chunk_mode_windows_of_tokens_with_overlap(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    text = (SOURCES / "novel.txt").read_text()
    rows = split_text(text, "chunk", tokenizer, chunk_tokens=40, overlap=8)
    assert len(rows) > 3
    lengths = [len(tokenizer.encode(r, add_special_tokens=False)) for r in rows]
    assert max(lengths) <= 41  # re-tokenizing a cut can merge differently by a token
    # Consecutive chunks share text, and together they cover the document.
    assert rows[0][-10:].strip() and rows[0][-10:].strip().split()[-1] in rows[1]
    assert rows[-1].endswith("every term.")
    assert rows[0].startswith("The Deck by the Sea")


def test_chunk_mode_needs_a_model(tunedeck, tmp_path):
    code, _, err = tunedeck("data", "convert", SOURCES / "novel.txt", "--out", tmp_path / "o",
                            "--txt-mode", "chunk")
    assert code == 2 and "pass --model" in err


def test_split_100_0_0_writes_only_train_and_mlx_lm_trains(tunedeck, tiny_model, tmp_path):
    # An empty valid.jsonl stops mlx_lm.lora (its loader indexes the first record); a missing
    # one only turns validation off. So empty splits are not written.
    out = tmp_path / "data"
    code, stdout, _ = tunedeck("data", "convert", SOURCES / "prompt_completion.jsonl",
                               "--out", out, "--split", "100,0,0")
    assert code == 0
    assert [p.name for p in out.iterdir()] == ["train.jsonl"]
    assert len(read_jsonl(out / "train.jsonl")) == 12
    assert "warning: no valid.jsonl: mlx_lm.lora will train without validation" in stdout
    result = train_with_mlx_lm(tiny_model, out, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_split_sizes_seed_and_dedup(tunedeck, tmp_path):
    assert split_sizes(12, (80, 10, 10)) == (10, 1, 1)
    assert split_sizes(100, (80, 10, 10)) == (80, 10, 10)
    assert split_sizes(5, (100, 0, 0)) == (5, 0, 0)
    src = tmp_path / "dups.jsonl"
    rows = [{"prompt": f"q{i % 30}", "completion": f"a{i % 30}"} for i in range(60)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = tunedeck("data", "convert", src, "--out", tmp_path / "a", "--dedup",
                            "--seed", "7")
    assert code == 0 and "30 duplicates removed" in out
    assert len(all_rows(tmp_path / "a")) == 30
    assert tunedeck("data", "convert", src, "--out", tmp_path / "b", "--dedup",
                    "--seed", "7")[0] == 0
    assert tunedeck("data", "convert", src, "--out", tmp_path / "c", "--dedup",
                    "--seed", "8")[0] == 0
    a, b, c = (read_jsonl(tmp_path / x / "train.jsonl") for x in "abc")
    assert a == b and a != c


def test_refuses_a_non_empty_output_without_force(tunedeck, tmp_path):
    out = tmp_path / "data"
    assert tunedeck("data", "convert", SOURCES / "conversations.jsonl", "--out", out)[0] == 0
    code, _, err = tunedeck("data", "convert", SOURCES / "prompt_completion.jsonl", "--out", out)
    assert code == 2 and f"{out}: not empty; pass --force" in err
    assert "messages" in read_jsonl(out / "train.jsonl")[0]
    (out / "notes.md").write_text("mine")
    code, _, _ = tunedeck("data", "convert", SOURCES / "prompt_completion.jsonl", "--out", out,
                          "--force", "--split", "100,0,0")
    assert code == 0
    # The old valid/test files would mix old rows in: gone. Other files stay.
    assert sorted(p.name for p in out.iterdir()) == ["notes.md", "train.jsonl"]
    assert "prompt" in read_jsonl(out / "train.jsonl")[0]


def test_never_overwrites_an_input(tunedeck, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    train = out / "train.jsonl"
    original = (SOURCES / "prompt_completion.jsonl").read_bytes()
    train.write_bytes(original)
    code, _, err = tunedeck("data", "convert", train, "--out", out, "--force")
    assert code == 2 and "is an input and would be overwritten" in err
    assert train.read_bytes() == original


def test_invalid_records_are_listed_and_can_be_skipped(tunedeck, tmp_path):
    src = FIXTURES / "invalid" / "truncated.jsonl"
    code, out, err = tunedeck("data", "convert", src, "--out", tmp_path / "a")
    assert code == 2
    assert out.startswith(f"{src}:2: invalid JSON")
    assert "1 invalid record(s) in the input" in err
    assert not (tmp_path / "a").exists()
    code, out, _ = tunedeck("data", "convert", src, "--out", tmp_path / "b", "--skip-invalid",
                            "--split", "100,0,0")
    assert code == 0 and "1 invalid row left out" in out
    assert len(read_jsonl(tmp_path / "b" / "train.jsonl")) == 2


def test_output_is_plain_utf8_jsonl_without_temp_files(tunedeck, tmp_path):
    out = tmp_path / "data"
    assert tunedeck("data", "convert", FIXTURES / "valid" / "chat_bom_crlf.jsonl",
                    "--out", out, "--split", "100,0,0")[0] == 0
    data = (out / "train.jsonl").read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf") and b"\r\n" not in data
    assert [p.name for p in out.iterdir()] == ["train.jsonl"]


def test_plain_text_cannot_become_chat(tunedeck, tmp_path):
    code, out, err = tunedeck("data", "convert", SOURCES / "novel.txt", "--out", tmp_path / "o",
                              "--to", "chat")
    assert code == 2 and out == ""
    assert f"{SOURCES / 'novel.txt'}: plain text has no prompts or answers" in err


def test_cancel_writes_nothing(tmp_path):
    import threading

    from tunedeck.core.data.convert import ConversionCancelled, convert

    src = tmp_path / "big.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": "a"}) + "\n"
                           for i in range(5000)))
    cancel = threading.Event()
    with pytest.raises(ConversionCancelled):
        convert([src], tmp_path / "out", cancel=cancel,
                progress=lambda message, fraction: cancel.set())
    assert not (tmp_path / "out").exists()
