"""Feature keys (mlx-lm's prompt_feature & co.) and preference data, as `data check`, the
validation behind it and `data convert` read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunedeck.core.data import validate
from tunedeck.core.data.jsonl_check import check_row
from tunedeck.core.data.validate import validate_file

REPO = Path(__file__).resolve().parents[2]
REALDATA = REPO.parent / "shared" / "realdata" / "datasets"
QA_FEATURES = {"prompt": "question", "completion": "answer"}


def needs_realdata(name: str) -> Path:
    path = REALDATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared real datasets are not on this machine)")
    return path


def write_qa(path: Path, rows: int = 6, broken_line: int = 0) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(1, rows + 1):
            rec = {"question": f"What is {i} + {i}?", "answer": f"{2 * i}"}
            if i == broken_line:
                del rec["answer"]
            f.write(json.dumps(rec) + "\n")
    return path


def test_question_answer_columns_validate_clean_with_the_feature_keys(tmp_path):
    path = write_qa(tmp_path / "qa.jsonl")
    assert not validate_file(path).ok      # under mlx-lm's default keys it is nothing
    report = validate_file(path, features=QA_FEATURES)
    assert report.ok, [str(p) for p in report.problems]
    assert (report.format, report.rows, report.valid_rows) == ("completions", 6, 6)


def test_problems_name_the_users_column(tmp_path):
    path = write_qa(tmp_path / "qa.jsonl", broken_line=3)
    report = validate_file(path, features=QA_FEATURES)
    assert [str(p) for p in report.problems] == [f'{path}:3: missing "answer"']


def test_unnamed_features_keep_mlx_lm_defaults_and_unknown_ones_are_refused(tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    assert validate_file(chat, features={"prompt": "question", "chat": None}).ok
    from tunedeck.core.errors import BadInput
    with pytest.raises(BadInput, match="unknown feature 'question'"):
        validate_file(chat, features={"question": "q"})


def test_worker_processes_read_the_same_feature_keys(tmp_path, monkeypatch):
    path = write_qa(tmp_path / "qa.jsonl", rows=4000, broken_line=3500)
    monkeypatch.setattr(validate, "FIRST_CHUNK", 4096)
    monkeypatch.setattr(validate, "CHUNK", 32 * 1024)
    monkeypatch.setattr(validate, "WORKERS_MIN_BYTES", 0)
    report = validate_file(path, workers=2, features=QA_FEATURES)
    assert [str(p) for p in report.problems] == [f'{path}:3500: missing "answer"']
    assert report.valid_rows == 3999


def test_the_pane_row_check_reads_the_feature_keys():
    from tunedeck.core.data.formats import FeatureKeys

    keys = FeatureKeys.of(QA_FEATURES)
    row = b'{"question": "q", "answer": "a"}'
    assert check_row(row, "completions", keys).ok
    assert not check_row(row, "completions").ok


def test_data_check_takes_feature_options(tunedeck, tmp_path):
    path = write_qa(tmp_path / "qa.jsonl")
    code, out, _ = tunedeck("data", "check", path)
    assert code == 2
    code, out, _ = tunedeck("data", "check", path, "--prompt-feature", "question",
                            "--completion-feature", "answer")
    assert code == 0, out
    assert f"{path}: completions (question/answer), 6 rows, ok" in out


def test_data_check_reads_the_projects_feature_keys(tunedeck, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    write_qa(project / "data" / "train.jsonl")
    write_qa(project / "data" / "valid.jsonl")
    (project / "tunedeck.toml").write_text(
        '# my project\ndata = "data"\nprompt_feature = "question"\n'
        'completion_feature = "answer"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = tunedeck("data", "check", project / "data")
    assert code == 0, out + err
    assert "prompt_feature=question, completion_feature=answer" in err
    # The command line wins over the project.
    code, out, _ = tunedeck("data", "check", project / "data", "--completion-feature", "reply")
    assert code == 2 and 'missing "reply"' in out


def test_token_counts_read_the_users_columns(tunedeck, tmp_path, tiny_model):
    path = write_qa(tmp_path / "qa.jsonl")
    code, out, _ = tunedeck("data", "check", path, "--model", tiny_model,
                            "--prompt-feature", "question", "--completion-feature", "answer")
    assert code == 0, out
    tokens = next(line for line in out.splitlines() if line.startswith("  tokens:"))
    assert " in 6 rows " in tokens


# -- preference and KTO data ----------------------------------------------------------------------

@pytest.mark.parametrize("name, rows", [("dpo_en_demo.json", 300),
                                        ("mlx_lm_pr417_dpo_train.jsonl", 10)])
def test_preference_data_is_named_as_such_not_missing_completions(tunedeck, name, rows):
    path = needs_realdata(name)
    code, out, _ = tunedeck("data", "check", path)
    assert code == 2
    assert "missing" not in out and "no assistant" not in out
    assert f"{path}:1: preference data (prompt with chosen/rejected answers)" in out
    assert "--keep chosen" in out
    assert "preference (chosen/rejected), " in out and f"{rows} rows, 1 error" in out


def test_kto_data_is_named_as_such(tunedeck):
    path = needs_realdata("kto_en_demo.json")
    code, out, _ = tunedeck("data", "check", path)
    assert code == 2
    assert f"{path}:1: KTO data (examples labelled true/false)" in out
    assert "300 rows, 1 error" in out


def test_convert_keeps_the_chosen_answers_as_sft_data(tunedeck, tmp_path):
    path = needs_realdata("dpo_en_demo.json")
    code, _, err = tunedeck("data", "convert", path, "--out", tmp_path / "no")
    assert code == 2 and "pass --keep chosen" in err and len(err.strip().splitlines()) == 1
    code, out, _ = tunedeck("data", "convert", path, "--out", tmp_path / "sft", "--keep",
                            "chosen", "--split", "100,0,0", "--no-shuffle")
    assert code == 0, out
    source = json.loads(path.read_text(encoding="utf-8"))
    written = [json.loads(line) for line in (tmp_path / "sft" / "train.jsonl").open()]
    assert len(written) == len(source) == 300
    first = written[0]["messages"]
    assert first[-1] == {"role": "assistant", "content": source[0]["chosen"]["value"]}
    assert first[0] == {"role": "user", "content": source[0]["conversations"][0]["value"]}
    code, out, _ = tunedeck("data", "check", tmp_path / "sft" / "train.jsonl")
    assert code == 0, out


def test_convert_keeps_plain_preference_pairs_as_completions(tunedeck, tmp_path):
    path = needs_realdata("mlx_lm_pr417_dpo_train.jsonl")
    code, out, _ = tunedeck("data", "convert", path, "--out", tmp_path / "sft", "--keep",
                            "chosen", "--split", "100,0,0", "--no-shuffle")
    assert code == 0, out
    source = [json.loads(line) for line in path.open()]
    written = [json.loads(line) for line in (tmp_path / "sft" / "train.jsonl").open()]
    assert written == [{"prompt": r["prompt"], "completion": r["chosen"]} for r in source]


def test_convert_keeps_only_the_kto_examples_labelled_true(tunedeck, tmp_path):
    path = needs_realdata("kto_en_demo.json")
    code, out, _ = tunedeck("data", "convert", path, "--out", tmp_path / "sft", "--keep",
                            "chosen", "--split", "100,0,0", "--no-shuffle")
    assert code == 0, out
    source = json.loads(path.read_text(encoding="utf-8"))
    good = [r["messages"] for r in source if r["label"] is True]
    written = [json.loads(line)["messages"] for line in (tmp_path / "sft" / "train.jsonl").open()]
    assert written == good and 0 < len(good) < len(source)
    assert f"{len(source) - len(good)} rows labelled false left out" in out
