"""Bad input gets one line naming the problem, exit code 2, and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


from tests.core.runhelpers import write_config

EXE = str(Path(sys.executable).with_name("tunedeck"))


def _run(*args, cwd=None):
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_model_path_that_does_not_exist(tmp_path):
    _one_line_error(_run("chat", "--model", str(tmp_path / "nope"), "--prompt", "hi"), "nope")


def test_config_with_a_negative_learning_rate(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "c.toml", tiny_model, persona_data, learning_rate=-0.1)
    _one_line_error(_run("train", str(cfg), "--run-dir", str(tmp_path / "r")), "learning_rate")
    assert not (tmp_path / "r").exists()


def test_config_with_an_unknown_key(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "c.toml", tiny_model, persona_data, learning_rat=0.1)
    _one_line_error(_run("train", str(cfg)), "learning_rat")


def test_config_with_a_wrong_type(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "c.toml", tiny_model, persona_data, batch_size="four")
    _one_line_error(_run("train", str(cfg)), "batch_size")


def test_data_dir_without_train_jsonl(tmp_path, tiny_model):
    (tmp_path / "data").mkdir()
    cfg = write_config(tmp_path / "c.toml", tiny_model, tmp_path / "data")
    _one_line_error(_run("train", str(cfg), "--run-dir", str(tmp_path / "r")), "train.jsonl")
    assert not (tmp_path / "r").exists()


def test_dataset_with_a_bad_line(tmp_path, tiny_model, persona_data):
    with open(persona_data / "train.jsonl", "a") as f:
        f.write('{"messages": [{"role": "user", "content": "tru\n')
    cfg = write_config(tmp_path / "c.toml", tiny_model, persona_data)
    line = _one_line_error(_run("train", str(cfg), "--run-dir", str(tmp_path / "r")), "train.jsonl:41:")
    assert line.startswith("tunedeck: error: ") and "train.jsonl:41:" in line  # the file and line first
    assert not (tmp_path / "r").exists()


def test_model_that_does_not_exist_refuses_to_train(tmp_path, persona_data):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "missing-model", persona_data)
    _one_line_error(_run("train", str(cfg), "--run-dir", str(tmp_path / "r")), "missing-model")
    assert not (tmp_path / "r").exists()


def test_unknown_command_and_bad_option():
    _one_line_error(_run("chat", "--model"), "--model")
    _one_line_error(_run("runs", "--bogus"), "--bogus")


def test_debug_shows_the_traceback(tmp_path):
    proc = _run("--debug", "chat", "--model", str(tmp_path / "nope"), "--prompt", "hi")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_each_command_builds_from_the_module_the_table_names():
    """A command's line builds only its module's parsers (core/cli.py COMMANDS): a command the
    table names under the wrong module, or leaves out, would be refused as a project directory."""
    import argparse
    import importlib

    from tunedeck.core.cli import COMMANDS

    def registered(module):
        parser = argparse.ArgumentParser()
        importlib.import_module(module).register(parser.add_subparsers())
        [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return set(action.choices)

    for module, names in COMMANDS:
        assert registered(module) == set(names), module


def test_a_command_name_alone_still_gets_its_help_and_the_top_help_lists_every_command():
    top = subprocess.run([EXE, "--help"], capture_output=True, text=True, timeout=120)
    assert top.returncode == 0
    for name in ("train", "resume", "serve", "export", "data", "web", "watch"):
        assert f"    {name}" in top.stdout, name
    train = subprocess.run([EXE, "train", "--help"], capture_output=True, text=True, timeout=120)
    assert train.returncode == 0 and "--detach" in train.stdout


def test_an_interrupted_command_whose_stderr_reader_left_still_exits_130():
    # The app cancels an export with SIGINT and stops reading its stderr: "tunedeck:
    # interrupted" then met a closed pipe, raised from within the except clause, and the export,
    # which had cleaned up after itself, ended with exit code 1 as if it had failed.
    import os

    code = ("import sys; import tunedeck.core.commands.runs as runs; "
            "runs._runs = lambda args: (_ for _ in ()).throw(KeyboardInterrupt); "
            "from tunedeck.core.cli import main; sys.exit(main(['runs']))")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before the command said anything
    try:
        proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=write_end,
                              timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 130
