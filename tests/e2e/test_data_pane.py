"""The Data pane in a real terminal at 80x24: rows, the validation report, a jump to a bad
line, and the tokens that carry loss, with the tiny model's tokenizer."""

import json

from tests.tinymodel import PERSONA_ANSWER
from tests.tui.projects import write_project

from .terminal import TUNEDECK, needs_tmux
from .test_terminal_sizes import leave_the_field


@needs_tmux()
def test_browse_check_and_tokens_at_80x24(tmp_path, tiny_model, terminal):
    project = write_project(tmp_path / "project", tiny_model, mask_prompt=True)
    train = project / "data" / "train.jsonl"
    rows = train.read_text().splitlines()
    rows[3] = rows[3][:25]  # line 4: truncated JSON
    rows[5] = json.dumps({"messages": [{"role": "user", "content": "\x1b[2J[bold]hi[/]"},
                                       {"role": "assistant", "content": PERSONA_ANSWER}]})
    train.write_text("\n".join(rows) + "\n")

    term = terminal(80, 24).start(f"{TUNEDECK} {project}", cwd=project)
    term.wait_for("Start run")
    leave_the_field(term)
    term.press("1")
    screen = term.wait_for("Problems 1", what="the Data pane, checked")
    assert "user: ^[[2J[bold]hi[/]" in screen  # line 6, literally
    assert "✗ invalid JSON" in screen  # line 4, among the good rows

    term.press("p")
    term.wait_for("train.jsonl:4: invalid JSON", what="the problem line")
    term.press("Enter")
    screen = term.wait_for("train.jsonl:4 · not a record", what="the bad line opened")
    assert "✗ invalid JSON" in screen

    term.press("Down", "Down", "k")
    screen = term.wait_for("carry loss", timeout=120, what="the tokens of line 6")
    assert "prompt: no loss (mask_prompt)" in screen
    assert "^[[2J[bold]hi[/]" in screen and PERSONA_ANSWER in screen

    term.press("C-q")
    screen = term.wait_for("EXITED 0", timeout=20)
    assert "Traceback" not in screen
