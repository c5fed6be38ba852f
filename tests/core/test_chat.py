"""`tunedeck chat` with the tiny model: an adapter trained on the persona set moves the answer to its data."""

from __future__ import annotations

import json
import subprocess
import sys


from tests.tinymodel import PERSONA_ANSWER
from tunedeck.core.cli import main


def _ask(capsys, *args) -> str:
    capsys.readouterr()
    assert main(["chat", *args, "--prompt", "who are you", "--temp", "0", "--max-tokens", "12"]) == 0
    return capsys.readouterr().out


def test_adapter_moves_the_answer_towards_the_training_data(capsys, tiny_model, persona_run):
    base = _ask(capsys, "--model", str(tiny_model))
    tuned = _ask(capsys, "--model", str(tiny_model), "--adapter", str(persona_run / "adapters"))
    assert PERSONA_ANSWER[:20] not in base
    assert PERSONA_ANSWER[:20] in tuned


def test_a_numbered_checkpoint_file_and_a_run_directory_are_adapters(capsys, tiny_model, persona_run):
    checkpoint = persona_run / "adapters" / "0000100_adapters.safetensors"
    by_file = _ask(capsys, "--model", str(tiny_model), "--adapter", str(checkpoint))
    by_run = _ask(capsys, "--model", str(tiny_model), "--adapter", str(persona_run))
    assert PERSONA_ANSWER[:20] in by_file
    assert by_run == by_file


def test_adapter_with_the_wrong_shapes_is_one_clear_line(capsys, tmp_path, tiny_model, persona_run):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(persona_run / "adapters", bad)
    config = json.loads((bad / "adapter_config.json").read_text())
    config["lora_parameters"]["rank"] = 4  # the weights were trained at rank 8
    (bad / "adapter_config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["chat", "--model", str(tiny_model), "--adapter", str(bad), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "shape" in err[0] and "expects" in err[0] and "Traceback" not in err[0]


def test_line_mode_holds_a_multi_turn_chat_until_eof(tiny_model, persona_run):
    proc = subprocess.run(
        [sys.executable, "-c", "from tunedeck.core.cli import main; import sys; sys.exit(main())",
         "chat", "--model", str(tiny_model), "--adapter", str(persona_run / "adapters"),
         "--temp", "0", "--max-tokens", "8"],
        input="who are you\n\nwhat is the deck\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    answers = proc.stdout.strip().splitlines()
    assert len(answers) == 2  # one line per non-empty turn
    assert all(a.startswith("tunedeck") for a in answers)


def test_bad_sampling_settings_are_refused_before_loading(capsys, tiny_model):
    assert main(["chat", "--model", str(tiny_model), "--prompt", "x", "--top-p", "0"]) == 2
    assert "--top-p" in capsys.readouterr().err
