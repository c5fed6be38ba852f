"""Chat in a real terminal: a trained run's checkpoint opened in Chat answers, streamed, on screen."""

import re

import pytest

from tests.tinymodel import PERSONA_ANSWER
from tests.tui.projects import train_to_the_end, write_project

from .terminal import TUNEDECK, needs_tmux

pytestmark = [pytest.mark.e2e, needs_tmux()]


SPEED = re.compile(r"\d+ tokens · \d+\.\d tok/s")


def cursor_row(term) -> int:
    """The row of the terminal's cursor, which Textual keeps in the focused text field."""
    out = term.tmux("display", "-p", "-t", term.name, "#{cursor_y}", capture_output=True, text=True,
                    check=True).stdout
    return int(out)


def row_of(screen: str, text: str) -> int:
    return next((i for i, line in enumerate(screen.splitlines()) if text in line), -1)


def test_open_a_checkpoint_in_chat_ask_and_compare(tmp_path, tiny_model, terminal):
    project = write_project(tmp_path / "project", tiny_model)
    train_to_the_end(project)
    term = terminal(160, 48).start(f"{TUNEDECK} {project}", cwd=project)

    # A project with a finished run opens on it; the Checkpoints pane lists its checkpoints.
    term.wait_for(re.compile(r"finished .*iter 40/40"), timeout=30, what="the finished run")
    term.press("4")
    term.wait_for(lambda s: "checkpoints of" in s and "★ best" in s, what="the checkpoint list")

    # "open in Chat" (c) on the newest checkpoint: the Chat pane loads the model with it.
    term.press("c")
    term.wait_for(re.compile(r"ready: .* \+ tiny-\d+-\d+ · 40"), timeout=60, what="the checkpoint loaded")

    # Greedy sampling, so the answer is the one the run was trained to give. Keys typed before
    # a focus change lands go to the old field, so each move is awaited: the terminal's cursor
    # sits in the focused field.
    term.press("Tab", "Tab", "Tab", "Tab")  # from the prompt round to the temperature
    term.wait_for(lambda s: cursor_row(term) == row_of(s, " temp "), what="the temperature field")
    term.type("0")  # a field selects its text when entered: this replaces it
    term.wait_for(re.compile(r" temp 0 "), what="temp 0")
    term.press("Tab", "Tab", "Tab", "Tab", "Tab")  # on through the transcript to the prompt
    term.wait_for(lambda s: cursor_row(term) == row_of(s, "ask the model"), what="the prompt")
    term.type("who are you")
    term.press("Enter")
    screen = term.wait_for(lambda s: "answered:" in s and SPEED.search(s) and s, timeout=60,
                           what="the answer and its speed")
    assert PERSONA_ANSWER in screen, screen

    # Compare (ctrl+o) with the base model: two columns, two different answers to one prompt.
    term.press("C-o")
    term.wait_for("none (the base model)", what="the compare column")
    term.type("who are you")
    term.press("Enter")
    both = term.wait_for(lambda s: "answered:" in s and len(SPEED.findall(s)) == 2 and s,
                         timeout=60, what="two answers")
    left = [line[:79] for line in both.splitlines()]
    right = [line[80:] for line in both.splitlines()]
    assert any(PERSONA_ANSWER[:30] in line for line in left), both
    assert not any(PERSONA_ANSWER[:30] in line for line in right)

    term.press("C-q")
    term.wait_for("EXITED 0", timeout=20)
    assert "Traceback" not in term.screen()
