"""How the answer check (a) reads: verify.json and `tunedeck export` say what was compared."""

from __future__ import annotations

from pathlib import Path

from tunedeck.core.commands.export import _show
from tunedeck.core.export import ExportResult
from tunedeck.core.export.verify import Answer, compare_answers


def test_equal_answers_say_how_many_were_compared_with_what(capsys):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answers = [Answer(question, [5, 6, 7], "Paris."), Answer(question, [8], "Rome.")]
    check = compare_answers(answers, list(answers), None, None, None, requantized=False).to_json()
    assert check["equal"] and check["summary"] == "2 greedy answers token for token like base + adapter"
    _show(ExportResult(Path("/x/export-30-mlx"), "mlx", "adapters/0000030_adapters.safetensors", "x",
                       {"answers": check}))
    out = capsys.readouterr().out
    # It said "answers    equal" and nothing of what was equal to what, nor what to do next.
    assert "  answers    equal: 2 greedy answers token for token like base + adapter" in out
    assert out.splitlines()[-1] == "chat with it: tunedeck chat --model /x/export-30-mlx"
