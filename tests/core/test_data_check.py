"""`tunedeck data check` and the validation behind it: every problem as FILE:LINE."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tunedeck.core.data import validate
from tunedeck.core.data.validate import validate_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "data"
VALID = FIXTURES / "valid"
INVALID = FIXTURES / "invalid"




def lines_starting(out: str, prefix: str) -> list:
    return [line for line in out.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("name, line, message", [
    ("truncated.jsonl", 2, "invalid JSON: Unterminated string"),
    ("invalid_utf8.jsonl", 2, "invalid UTF-8: byte 0xe9"),
    ("missing_completion.jsonl", 2, 'missing "completion"'),
    ("empty_completion.jsonl", 3, 'empty "completion"'),
    ("no_assistant.jsonl", 2, "no assistant message"),
    ("mixed.jsonl", 3, "chat (messages) record in a file of completions (prompt/completion) "
                       "records"),
    ("trailing_comma.json", 3, "trailing comma"),
])
def test_check_exits_2_and_names_the_bad_line(tunedeck, name, line, message):
    path = INVALID / name
    code, out, _ = tunedeck("data", "check", path)
    assert code == 2
    found = lines_starting(out, f"{path}:{line}: ")
    assert any(message in text for text in found), out
    assert out.splitlines()[-1].startswith("invalid: 1 file, ")


def test_the_good_rows_still_count(tunedeck):
    code, out, _ = tunedeck("data", "check", INVALID / "truncated.jsonl")
    assert code == 2
    assert f"{INVALID / 'truncated.jsonl'}: completions (prompt/completion), 3 rows, 2 valid, " \
           "1 error" in out


def test_empty_file_gets_a_clear_error(tunedeck):
    path = INVALID / "empty.jsonl"
    code, out, _ = tunedeck("data", "check", path)
    assert code == 2
    assert f"{path}:1: empty file: no records" in out


@pytest.mark.parametrize("name, fmt", [
    ("completions.jsonl", "completions (prompt/completion)"),
    ("chat.jsonl", "chat (messages)"),
    ("text.jsonl", "text (text)"),
    ("chat_bom_crlf.jsonl", "chat (messages)"),
])
def test_valid_files_in_each_mlx_format_pass(tunedeck, name, fmt):
    path = VALID / name
    code, out, _ = tunedeck("data", "check", path)
    assert code == 0, out
    assert f"{path}: {fmt}, " in out
    assert not [line for line in out.splitlines() if line.startswith(f"{path}:") and
                " warning: " not in line and not line.startswith(f"{path}: ")]
    assert out.splitlines()[-1].startswith("ok: 1 file, 0 errors")


def test_bom_passes_with_a_warning_naming_mlx_lm(tunedeck):
    # mlx_lm.lora parses lines with json.loads, which rejects a BOM: say so, but the records
    # themselves are valid.
    path = VALID / "chat_bom_crlf.jsonl"
    code, out, _ = tunedeck("data", "check", path)
    assert code == 0
    assert f"{path}:1: warning: the file starts with a UTF-8 BOM" in out
    assert f"{path}: chat (messages), 4 rows, 1 warning" in out


def test_a_directory_is_checked_as_mlx_lm_reads_it(tunedeck, tmp_path):
    for split in ("train", "valid", "test"):
        shutil.copy(VALID / "chat.jsonl", tmp_path / f"{split}.jsonl")
    code, out, _ = tunedeck("data", "check", tmp_path)
    assert code == 0
    assert out.splitlines()[-1] == "ok: 3 files, 0 errors, 0 warnings"

    (tmp_path / "train.jsonl").unlink()
    code, out, _ = tunedeck("data", "check", tmp_path)
    assert code == 2
    assert f"{tmp_path}: no train.jsonl" in out


def test_non_mlx_formats_are_named_with_the_fix(tunedeck):
    path = FIXTURES / "sources" / "conversations.jsonl"
    code, out, _ = tunedeck("data", "check", path)
    assert code == 2
    assert (f"{path}:1: conversations (conversations with role/content) is not a format mlx-lm "
            f"reads; convert it: tunedeck data convert {path} --out DIR") in out


def test_validation_goes_on_and_caps_the_display(tunedeck, tmp_path):
    path = tmp_path / "train.jsonl"
    with open(path, "w") as f:
        for i in range(200):
            f.write('{"prompt": "p", "completion": "c"}\n' if i % 2 else '{"prompt": "p"\n')
    code, out, _ = tunedeck("data", "check", path)
    assert code == 2
    shown = lines_starting(out, f"{path}:")
    assert [s.split(":")[1] for s in shown[:3]] == ["1", "3", "5"]
    assert len([s for s in shown if not s.startswith(f"{path}: ")]) == 50
    assert "... 50 more problem line(s) not shown" in out
    assert f"{path}: completions (prompt/completion), 200 rows, 100 valid, 100 errors" in out


def test_strict_fails_on_warnings(tunedeck):
    code, _, _ = tunedeck("data", "check", "--strict", VALID / "chat_bom_crlf.jsonl")
    assert code == 2


def test_blank_lines_and_unknown_records_are_errors(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a"}\n\n{"foo": 1}\n[1, 2]\n{"text": ""}\n')
    report = validate_file(path)
    assert [(p.line, p.message.split(":")[0]) for p in report.problems] == [
        (2, "blank line"),
        (3, "record in no known format (keys"),
        (4, "a record must be a JSON object, got array"),
        (5, 'empty "text"'),
    ]
    assert (report.rows, report.valid_rows) == (4, 1)


def _big_file(path: Path, n: int) -> dict:
    """n lines with a known problem every 997 lines; returns {line: message start}."""
    expected = {}
    with open(path, "w", encoding="utf-8") as f:
        for i in range(1, n + 1):
            if i % 997 == 0:
                f.write('{"messages": [{"role": "user", "content": "truncat\n')
                expected[i] = "invalid JSON"
            elif i % 1999 == 0:
                f.write(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
                expected[i] = "completions (prompt/completion) record in a file of chat"
            else:
                f.write(json.dumps({"messages": [
                    {"role": "user", "content": f"question {i} é"},
                    {"role": "assistant", "content": "answer " * (i % 7 + 1)}]},
                    ensure_ascii=False) + "\n")
    return expected


def test_worker_processes_report_the_same_lines(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    expected = _big_file(path, 12000)
    # Small chunks and no size threshold, so a ~1.5 MB file goes through several workers.
    monkeypatch.setattr(validate, "FIRST_CHUNK", 4096)
    monkeypatch.setattr(validate, "CHUNK", 96 * 1024)
    monkeypatch.setattr(validate, "WORKERS_MIN_BYTES", 0)
    seen = []
    parallel = validate_file(path, workers=2, progress=lambda msg, frac: seen.append(frac))
    serial = validate_file(path, workers=1)
    for report in (parallel, serial):
        assert {p.line: p.message for p in report.problems}.keys() == expected.keys()
        for p in report.problems:
            assert p.message.startswith(expected[p.line]), p
        assert report.rows == 12000
        assert report.valid_rows == 12000 - len(expected)
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_validation_can_be_cancelled(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    _big_file(path, 5000)
    monkeypatch.setattr(validate, "FIRST_CHUNK", 4096)
    monkeypatch.setattr(validate, "CHUNK", 64 * 1024)
    cancel = threading.Event()
    report = validate_file(path, workers=1, cancel=cancel,
                           progress=lambda msg, frac: cancel.set())
    assert not report.complete and not report.ok
    assert 0 < report.rows < 5000


def test_cancel_stops_the_worker_processes(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    _big_file(path, 12000)
    monkeypatch.setattr(validate, "FIRST_CHUNK", 4096)
    monkeypatch.setattr(validate, "CHUNK", 32 * 1024)
    monkeypatch.setattr(validate, "WORKERS_MIN_BYTES", 0)
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    cancel = threading.Event()

    def progress(message, fraction):
        if started:  # the workers run: cancel now
            cancel.set()

    report = validate_file(path, workers=2, cancel=cancel, progress=progress)
    assert not report.complete
    assert len(started) == 2 and all(p.poll() is not None for p in started)


def test_data_modules_stay_headless_and_light():
    # `tunedeck data --help` and the Data pane import these; mlx, transformers and the UI
    # must only load when a tokenizer is asked for.
    code = ("import sys\n"
            "from tunedeck.core.commands import data\n"
            "from tunedeck.core.data import convert, formats, line_index, sources, tokens, "
            "validate\n"
            "heavy = [m for m in ('mlx', 'mlx_lm', 'transformers', 'textual', 'rich') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_check_row_gives_the_pane_the_same_verdicts():
    from tunedeck.core.data.jsonl_check import check_row

    good = check_row(b'{"prompt": "a", "completion": "b"}', "completions")
    assert good.ok and good.format == "completions" and good.record["completion"] == "b"
    assert check_row(b'{"prompt": "a"', "completions").issues[0][1].startswith("invalid JSON")
    assert check_row(b'{"text": "caf\xe9"}').issues[0][1].startswith("invalid UTF-8")
    assert check_row(b"  \r").issues[0][1].startswith("blank line")
    mixed = check_row(b'{"messages": [{"role": "user", "content": "hi"}]}', "completions")
    assert [message.split(" (")[0] for _, message in mixed.issues] == [
        "chat", "no assistant message: nothing to train on"]
    assert not mixed.ok and mixed.format == "chat"


def test_blank_messages_read_the_same_on_every_path():
    from tunedeck.core.data.formats import check_record

    rec = {"messages": [{"role": "user", "content": "  "},
                        {"role": "assistant", "content": "\n"}]}
    assert check_record(rec, "chat") == [(False, "message 1 (user) is empty"),
                                         (True, "message 2 (assistant) is empty")]
