"""Rows as the model sees them (render_row) and `tunedeck data stats` / `check --model`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tunedeck.core.data.tokens import (count_tokens, histogram, load_tokenizer, render_row,
                                       token_stats)
from tunedeck.core.errors import BadInput

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "data"

CHAT = {"messages": [{"role": "system", "content": "You are a deck."},
                     {"role": "user", "content": "where is paris"},
                     {"role": "assistant", "content": "paris is in france"}]}


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    return load_tokenizer(str(tiny_model))




def test_chat_row_is_rendered_exactly_as_mlx_lm_feeds_it(tokenizer):
    from mlx_lm.tuner.datasets import ChatDataset

    row = render_row(CHAT, tokenizer, mask_prompt=True)
    tokens, offset = ChatDataset([CHAT], tokenizer, mask_prompt=True).process(CHAT)
    assert row.token_ids == list(tokens) and row.offset == offset
    assert row.text == ("<|im_start|>system\nYou are a deck.<|im_end|>\n<|im_start|>user\n"
                        "where is paris<|im_end|>\n<|im_start|>assistant\n"
                        "paris is in france<|im_end|>\n")
    assert "".join(row.token_strings) == row.text
    trained = "".join(s for s, m in zip(row.token_strings, row.loss_mask) if m)
    assert trained == "paris is in france<|im_end|>\n"


def test_without_mask_prompt_every_token_but_the_first_is_trained(tokenizer):
    row = render_row(CHAT, tokenizer, mask_prompt=False)
    assert row.offset == 0
    assert row.loss_mask == [False] + [True] * (len(row.token_ids) - 1)


def test_completions_row_uses_the_chat_template(tokenizer):
    row = render_row({"prompt": "say hello", "completion": "hello"}, tokenizer, mask_prompt=True)
    assert row.text == ("<|im_start|>user\nsay hello<|im_end|>\n<|im_start|>assistant\n"
                        "hello<|im_end|>\n")
    assert "".join(s for s, m in zip(row.token_strings, row.loss_mask) if m) == \
        "hello<|im_end|>\n"


def test_text_row_gets_the_end_token_and_refuses_mask_prompt(tokenizer):
    row = render_row({"text": "the sky is blue é"}, tokenizer)
    assert row.text == "the sky is blue é"
    assert "".join(row.token_strings) == "the sky is blue é<|im_end|>"
    with pytest.raises(BadInput, match="Prompt masking not supported"):
        render_row({"text": "x"}, tokenizer, mask_prompt=True)


def test_max_seq_length_cuts_the_loss_mask(tokenizer):
    row = render_row(CHAT, tokenizer, mask_prompt=False, max_seq_length=10)
    assert row.truncated == len(row.token_ids) - 10
    assert sum(row.loss_mask) == 9 and not any(row.loss_mask[10:])


def test_histogram_has_an_edge_at_max_seq_length():
    bins = histogram([5, 10, 99, 100, 101, 400], 100, bins=5)
    assert any(hi == 100 for _, hi, _ in bins)
    over = sum(rows for lo, _, rows in bins if lo >= 100)
    assert over == 2  # 101 and 400 are truncated; 100 fits
    assert sum(rows for *_, rows in bins) == 6


def test_token_counts_skip_unusable_rows(tokenizer, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(CHAT) + "\n{bad\n" + json.dumps({"prompt": "a", "completion": "b"})
                    + "\n" + json.dumps(CHAT) + "\n")
    counts = count_tokens(path, tokenizer)
    assert counts.lines == [1, 4] and counts.skipped == 2
    stats = token_stats(counts, max_seq_length=20)
    assert stats.rows == 2 and [line for line, _ in stats.over] == [1, 4]


def test_stats_command_draws_the_histogram(tunedeck, tiny_model, tmp_path):
    for split in ("train", "valid"):
        shutil.copy(FIXTURES / "valid" / "chat.jsonl", tmp_path / f"{split}.jsonl")
    code, out, _ = tunedeck("data", "stats", tmp_path, "--model", tiny_model,
                            "--max-seq-length", "40", "--mask-prompt")
    assert code == 0, out
    assert f"{tmp_path / 'train.jsonl'}: 6 rows, " in out
    assert "max_seq_length 40: rows below are truncated" in out
    assert "over max_seq_length 40: " in out


def test_check_with_a_model_names_rows_over_max_seq_length(tunedeck, tiny_model):
    path = FIXTURES / "valid" / "chat.jsonl"
    code, out, _ = tunedeck("data", "check", path, "--model", tiny_model,
                            "--max-seq-length", "45")
    assert code == 0
    over = [line for line in out.splitlines() if "over max_seq_length 45" in line
            and line.startswith(f"{path}:")]
    assert over and all(": warning: " in line for line in over)
    assert "  tokens: " in out
    code, _, _ = tunedeck("data", "check", path, "--model", tiny_model, "--max-seq-length", "45",
                          "--strict")
    assert code == 2


def test_max_seq_length_needs_a_model(tunedeck):
    code, _, err = tunedeck("data", "check", FIXTURES / "valid" / "chat.jsonl",
                            "--max-seq-length", "10")
    assert code == 2 and "pass --model" in err


def test_a_model_that_is_not_there_is_one_clear_line(tunedeck, tmp_path):
    code, out, err = tunedeck("data", "stats", FIXTURES / "valid" / "chat.jsonl",
                              "--model", tmp_path / "nowhere")
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(f"tunedeck: error: {tmp_path / 'nowhere'}")
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["check", "convert", "stats"])
def test_help_explains_with_examples(tunedeck, capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        tunedeck("data", command, "--help")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"tunedeck data {command} " in out


def _model_with_template(tiny_model: Path, tmp_path: Path, template) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    if template is None:
        config.pop("chat_template")
    else:
        config["chat_template"] = template
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    return model


def test_rows_the_chat_template_rejects_are_errors(tunedeck, tiny_model, tmp_path):
    # As Gemma's template does: a system turn stops training when its batch is drawn.
    model = _model_with_template(tiny_model, tmp_path, (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"))
    path = FIXTURES / "valid" / "chat.jsonl"
    code, out, _ = tunedeck("data", "check", path, "--model", model)
    assert code == 2
    for line in range(1, 6):
        assert (f"{path}:{line}: mlx-lm cannot tokenize this row: System role not supported "
                "(mlx_lm.lora would stop when it reaches it)") in out
    assert f"{path}:6: " not in out  # the row without a system turn is fine
    assert f"{path}: chat (messages), 6 rows, 1 valid, 5 errors" in out


def test_a_tokenizer_without_chat_template_is_named_once(tunedeck, tiny_model, tmp_path):
    model = _model_with_template(tiny_model, tmp_path, None)
    path = FIXTURES / "valid" / "completions.jsonl"
    code, out, _ = tunedeck("data", "check", path, "--model", model)
    assert code == 2
    assert [line for line in out.splitlines() if line.startswith(f"{path}:1:")] == [
        f"{path}:1: the tokenizer of {model} has no chat template; mlx-lm needs one for "
        "completions data (use text data, or a model with a template)"]
    code, _, _ = tunedeck("data", "check", FIXTURES / "valid" / "text.jsonl", "--model", model)
    assert code == 0
