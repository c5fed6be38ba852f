"""The app in real terminals: the demo's five panes, a small terminal, pipes, literal text."""

import json
import re
from pathlib import Path

import pytest

from tests.tui.projects import write_project

from .terminal import TUNEDECK, needs_tmux

pytestmark = [pytest.mark.e2e, needs_tmux()]

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
TITLES = ("Data", "Hyperparameters", "Training", "Checkpoints", "Chat")
HOSTILE = ["[bold red]x[/]", "[link=file:///etc/passwd]x[/link]", "\x1b[2J\x1b]0;pwned\x07"]


def leave_the_field(term, pane_key: str = "Start run") -> None:
    """Escape leaves a pane's text field for the tabs; the pane's keys leave the footer with it.

    Waiting for that keeps the next key from reaching the app glued to the escape (alt+key)."""
    term.press("Escape")
    term.wait_for(lambda screen: pane_key not in screen, what="the field to lose focus")


@pytest.mark.demo
def test_the_demo_shows_the_five_panes_and_ctrl_q_quits(tmp_path, terminal, demo_model):
    term = terminal(160, 48).start(f"{TUNEDECK} demo --dir {tmp_path / 'demo'}", cwd=tmp_path)
    tabs = term.wait_for(lambda s: all(t in s for t in TITLES) and s, timeout=60, what="five titles")
    assert re.search(r"Data\s+Hyperparameters\s+Training\s+Checkpoints\s+Chat", tabs)
    term.press("C-q")
    term.wait_for("EXITED 0", timeout=20)


def test_at_80x24_every_pane_keeps_its_main_control(tmp_path, tiny_model, terminal):
    project = write_project(tmp_path / "project", tiny_model)
    term = terminal(80, 24).start(f"{TUNEDECK} {project}", cwd=project)
    term.wait_for("Start run", what="the form's start key in the footer")
    term.wait_for(lambda s: "model" in s and "data" in s, what="the first fields")
    leave_the_field(term)
    for key, visible in (("3", "no run"), ("4", "iter"), ("1", "train.jsonl"), ("5", "Compare")):
        term.press(key)
        screen = term.wait_for(visible, what=f"pane {key}")
        assert all(title in screen.splitlines()[0] for title in TITLES)
        assert "Traceback" not in screen
    leave_the_field(term, "Compare")  # Chat puts the cursor in its prompt, for typing
    term.press("2")
    term.wait_for("Start run", what="back on the form")
    term.press("F10")
    term.wait_for("EXITED 0", timeout=20)


def test_a_dataset_row_with_markup_and_escapes_shows_literally(tmp_path, tiny_model, terminal):
    project = write_project(tmp_path / "project", tiny_model)
    with open(project / "data" / "train.jsonl", "w") as f:
        for text in HOSTILE:
            f.write(json.dumps({"messages": [{"role": "user", "content": text},
                                             {"role": "assistant", "content": "ok"}]}) + "\n")
    term = terminal(160, 30).start(f"{TUNEDECK} {project}", cwd=project)
    term.wait_for("Start run")
    leave_the_field(term)
    term.press("1")
    screen = term.wait_for("user: [bold red]x[/]", what="the row, literally")
    assert "user: [link=file:///etc/passwd]x[/link]" in screen
    assert "user: ^[[2J^[]0;pwned^G" in screen


def test_a_log_line_with_markup_and_escapes_shows_literally(tmp_path, terminal):
    log = tmp_path / "train.log"
    log.write_text((LOGS / "v032_piped.log").read_text() + "\n".join(HOSTILE) + "\n")
    term = terminal(120, 40).start(f"{TUNEDECK} watch {log}", cwd=tmp_path)
    screen = term.wait_for("[bold red]x[/]", what="the log line, literally")
    assert "[link=file:///etc/passwd]x[/link]" in screen
    assert "^[[2J^[]0;pwned^G" in screen
    assert re.search(r"iter 30/30", screen)


def test_watch_reads_a_pipe_and_keeps_the_keyboard(tmp_path, terminal):
    log = LOGS / "v032_long.log"
    term = terminal(120, 40).start(f"cat {log} | {TUNEDECK} watch -", cwd=tmp_path)
    term.wait_for(re.compile(r"ended .*iter 1200/1200"), what="the whole piped log")
    term.press("C-q")
    term.wait_for("EXITED 0", timeout=20)


def test_256_colours_and_the_light_theme_draw_without_error(tmp_path, tiny_model, terminal):
    project = write_project(tmp_path / "project", tiny_model)
    term = terminal(120, 40, TEXTUAL_COLOR_SYSTEM="256").start(f"{TUNEDECK} {project}", cwd=project)
    term.wait_for("Start run")
    term.press("C-t")
    leave_the_field(term)
    term.press("3")
    term.wait_for("no run")
    # Chat is the last pane built: quitting while a pane is half built can still print a
    # traceback (Textual composes nothing once exit is asked for), a known fault.
    term.press("5")
    term.wait_for("Compare")
    term.press("C-q")
    screen = term.wait_for("EXITED 0", timeout=20)
    assert "Traceback" not in screen
