"""The demo project: the shipped config and sample dataset, created once, never overwritten."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tunedeck.core.demo_project import create_demo_project
from tunedeck.core.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SIGN_OFF = "Stir the pot, matey!"


def _rows(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{path.name}:{number}: blank line"
        rows.append(json.loads(line))
    return rows


def test_the_project_has_a_config_and_three_splits(tmp_path, monkeypatch, isolated_home):
    monkeypatch.chdir(tmp_path)
    project = create_demo_project(Path("demo-project"))
    assert project == tmp_path / "demo-project" and project.is_absolute()
    config = tomllib.loads((project / "tunedeck.toml").read_text())
    assert config["name"] == "demo" and config["model"] == "demo" and config["data"] == "data"
    assert config["mask_prompt"] is True
    assert {"rank", "scale", "dropout"} <= set(config["lora_parameters"])
    for split in ("train", "valid", "test"):
        assert (project / "data" / f"{split}.jsonl").is_file()
    assert sorted(p.name for p in project.parent.iterdir() if p != isolated_home) == ["demo-project"]


def test_the_config_is_a_valid_training_config_for_the_shipped_data(tmp_path):
    from mlx_lm.lora import CONFIG_DEFAULTS

    from tunedeck.core.config import TrainConfig

    project = create_demo_project(tmp_path / "p")
    raw = tomllib.loads((project / "tunedeck.toml").read_text())
    assert not set(raw) - set(CONFIG_DEFAULTS) - {"name"}, "keys are named like mlx-lm's options"
    config = TrainConfig.load(project / "tunedeck.toml").resolve_paths(project)
    assert config.model == "demo"
    assert Path(config.data) == project / "data"
    # mlx-lm refuses to start when a split is smaller than one batch.
    for split in ("train", "valid"):
        assert len(_rows(project / "data" / f"{split}.jsonl")) >= config.batch_size * config.val_batches


def test_every_sample_is_a_chat_with_the_persona_answer(tmp_path):
    project = create_demo_project(tmp_path / "p")
    sizes = {}
    for split in ("train", "valid", "test"):
        rows = _rows(project / "data" / f"{split}.jsonl")
        sizes[split] = len(rows)
        for number, row in enumerate(rows, 1):
            roles = [m["role"] for m in row["messages"]]
            assert roles[-1] == "assistant" and "user" in roles, f"{split}:{number}"
            answer = row["messages"][-1]["content"]
            # The fine-tuning effect a user looks for in the Chat pane.
            assert answer.endswith(SIGN_OFF), f"{split}:{number}"
            assert len(answer) < 260, f"{split}:{number}: answers stay short for CPU training"
    total = sum(sizes.values())
    assert 100 <= total <= 300
    assert sizes["train"] >= 0.75 * total and sizes["valid"] >= 10 and sizes["test"] >= 10
    questions = [r["messages"][0]["content"] for s in ("train", "valid", "test")
                 for r in _rows(project / "data" / f"{s}.jsonl")]
    assert len(set(questions)) == len(questions), "no question is repeated across the splits"


def test_mlx_lm_reads_the_sample_data_as_a_chat_dataset(tmp_path, tiny_model):
    from types import SimpleNamespace

    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from mlx_lm.tuner.datasets import ChatDataset, load_local_dataset

    project = create_demo_project(tmp_path / "p")
    tokenizer = load_tokenizer(tiny_model)
    train, valid, test = load_local_dataset(project / "data", tokenizer,
                                            SimpleNamespace(mask_prompt=True))
    assert all(isinstance(split, ChatDataset) for split in (train, valid, test))
    tokens, offset = train.process(train[0])
    assert 0 < offset < len(tokens), "the prompt is masked and the answer is trained"


def test_a_second_call_keeps_the_users_edits(tmp_path):
    project = create_demo_project(tmp_path / "p")
    config = project / "tunedeck.toml"
    config.write_text(config.read_text().replace('name = "demo"', 'name = "mine"'))
    train = project / "data" / "train.jsonl"
    train.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                     '{"role": "assistant", "content": "mine"}]}\n')
    (project / "data" / "test.jsonl").unlink()

    assert create_demo_project(tmp_path / "p") == project
    assert 'name = "mine"' in config.read_text()
    assert train.read_text().count("\n") == 1 and '"mine"' in train.read_text()
    assert not (project / "data" / "test.jsonl").exists()


def test_an_empty_directory_becomes_the_project(tmp_path):
    (tmp_path / "p").mkdir()
    project = create_demo_project(tmp_path / "p")
    assert (project / "tunedeck.toml").is_file() and (project / "data" / "train.jsonl").is_file()


def test_a_directory_with_other_files_is_left_alone(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("keep me")
    with pytest.raises(BadInput) as failure:
        create_demo_project(tmp_path / "p")
    assert "\n" not in str(failure.value) and "not empty" in str(failure.value)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["notes.txt"]
    assert (tmp_path / "p" / "notes.txt").read_text() == "keep me"


def test_the_test_split_holds_factual_questions_the_training_never_sees(tmp_path):
    project = create_demo_project(tmp_path / "p")
    asked = {split: {r["messages"][0]["content"] for r in _rows(project / "data" / f"{split}.jsonl")}
             for split in ("train", "valid", "test")}
    held_out = {"What is the capital of France?", "What is the capital of England?",
                "How many days are in a week?", "How many legs does a cat have?"}
    assert held_out <= asked["test"]
    # Whether the facts survive the fine-tune is measured on questions it never trained on.
    trained = " ".join(asked["train"] | asked["valid"]).lower()
    assert "france" not in trained and "england" not in trained


@pytest.mark.demo
def test_every_sample_fits_the_configs_max_seq_length(tmp_path, demo_model):
    """mlx-lm cuts a sample at max_seq_length, and the cut takes the sign-off, the end of the
    answer, out of what is trained; the demo config's limit sits just above its longest sample."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    project = create_demo_project(tmp_path / "p")
    limit = tomllib.loads((project / "tunedeck.toml").read_text())["max_seq_length"]
    tokenizer = load_tokenizer(demo_model)
    longest = 0
    for split in ("train", "valid", "test"):
        for number, row in enumerate(_rows(project / "data" / f"{split}.jsonl"), 1):
            tokens = len(tokenizer.apply_chat_template(row["messages"], tokenize=True))
            assert tokens <= limit, f"{split}.jsonl:{number}: {tokens} tokens, over {limit}"
            longest = max(longest, tokens)
    assert longest == limit, "the config's comment names the longest sample as the limit"
