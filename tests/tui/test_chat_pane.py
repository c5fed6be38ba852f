"""The Chat pane in the whole app, on a really trained run of the tiny model: open a checkpoint,
ask, compare, stop, save; and the evaluation of a checkpoint from the Checkpoints pane."""

from __future__ import annotations

import json
import shutil
import threading

from textual.widgets import Input, Select, TabbedContent
from textual.worker import WorkerState

from tests.tinymodel import PERSONA_ANSWER
from tunedeck.core.rundir import find_runs
from tunedeck.core.chat_choices import BASE
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.panes.chat import ChatPane
from tunedeck.tui.panes.chat import pane as chat_pane
from tunedeck.tui.panes.chat.evaluation import EvaluationScreen
from tunedeck.tui.panes.chat.messages import AnswerStreamed
from tunedeck.tui.panes.chat.transcript import ChatTranscript

from .harness import APP_CSS, wait_until

PERSONA = PERSONA_ANSWER[:20]
MARKUP = ("[bold red]x[/] [link=file:///etc/passwd]click[/link] "
          "\x1b]8;;file:///etc/passwd\x1b\\y\x1b]8;;\x1b\\ \x1b[2J")


class RecordingApp(TunedeckApp):
    """The app, also counting the streamed pieces of each answer."""

    CSS_PATH = APP_CSS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pieces: list[tuple[int, int, str]] = []

    def on_answer_streamed(self, message: AnswerStreamed) -> None:
        self.pieces.append((message.serial, message.side, message.text))


def active(app) -> str:
    return app.query_one(TabbedContent).active


def answer_shown(app, side: int = 0) -> str:
    transcript = app.query_one(f"#chat-{'left' if side == 0 else 'right'}-transcript", ChatTranscript)
    return str(transcript.query(".chat-answer").last().render())


def status(app) -> str:
    return str(app.query_one("#chat-status").render())


async def open_checkpoint_in_chat(pilot, app) -> ChatPane:
    """Checkpoints pane, the newest checkpoint (40), "open in Chat" (c); waits for the load."""
    await wait_until(pilot, lambda: app.query(ChatPane), what="the Chat pane")
    await pilot.press("4")
    await wait_until(pilot, lambda: app.query_one("#checkpoint-table").row_count == 4, what="checkpoints")
    await pilot.press("c")
    pane = app.query_one(ChatPane)
    await wait_until(pilot, lambda: active(app) == "chat" and pane.loaded is not None, timeout=60,
                     what="the checkpoint loaded")
    assert pane.loaded[1].weights.name == "0000040_adapters.safetensors"
    assert isinstance(app.focused, Input) and app.focused.id == "chat-prompt"
    return pane


async def show_chat(pilot, app) -> ChatPane:
    """The Chat pane, chosen with its key once it is built (out of sight, after the first frame)."""
    await wait_until(pilot, lambda: app.query(ChatPane), what="the Chat pane")
    await pilot.press("5")
    return app.query_one(ChatPane)


async def set_field(pilot, app, field: str, value: str) -> None:
    app.query_one(f"#chat-{field}", Input).value = value
    await pilot.pause()


async def ask(pilot, app, question: str, timeout: float = 60) -> None:
    pane = app.query_one(ChatPane)
    # Each question that ends, answered or not, is a turn of the record: the answers of an
    # earlier question are still there until this one is taken, which a busy machine delays.
    turns = len(pane.record)
    app.query_one("#chat-prompt", Input).focus()
    await pilot.press(*question, "enter")
    await wait_until(pilot, lambda: len(pane.record) > turns and not pane.model_loading,
                     timeout=timeout, what="the answer")


async def test_a_checkpoint_answers_in_its_voice_and_the_base_does_not(finished_project):
    app = RecordingApp(project=finished_project)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await open_checkpoint_in_chat(pilot, app)
        await set_field(pilot, app, "temp", "0")
        await ask(pilot, app, "who are you")
        assert PERSONA in answer_shown(app)
        assert "tok/s" in str(pane.query(".chat-meta").last().render())

        # Back to the base model: the same loaded model, its adapter layers taken off.
        loaded = app.chat_model
        pane.query_one("#chat-adapter", Select).value = BASE
        await wait_until(pilot, lambda: pane.loaded and pane.loaded[1] is None, what="the base")
        assert app.chat_model is loaded and "stayed loaded" in status(app)
        await set_field(pilot, app, "max-tokens", "200")
        await ask(pilot, app, "who are you")
        base = answer_shown(app)
        assert base and PERSONA not in base

        # It came token by token: the base's answer reached the app in many growing pieces.
        serial = app.pieces[-1][0]
        pieces = [text for s, _, text in app.pieces if s == serial]
        assert len(pieces) > 1 and all(pieces[-1].startswith(p) for p in pieces)
        assert len(pane.conversations[0].turns) == 4  # multi-turn: both exchanges kept


async def test_compare_shows_two_different_answers_to_one_prompt(finished_project):
    app = TunedeckApp(project=finished_project)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await open_checkpoint_in_chat(pilot, app)
        await set_field(pilot, app, "temp", "0")
        await set_field(pilot, app, "max-tokens", "24")
        await pilot.press("ctrl+o")
        assert pane.compare and app.query_one("#chat-right").display
        assert app.query_one("#chat-compare-with", Select).value == BASE
        await ask(pilot, app, "who are you")
        adapter, base = answer_shown(app, 0), answer_shown(app, 1)
        assert PERSONA in adapter
        assert base and PERSONA not in base
        assert all(a.tokens_per_sec > 0 for a in pane.answers)


async def test_stopping_a_load_or_an_answer_leaves_the_app_responsive(finished_project):
    app = TunedeckApp(project=finished_project)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await open_checkpoint_in_chat(pilot, app)
        pane.query_one("#chat-adapter", Select).value = BASE
        # The base itself, not "no load under way": that holds until the choice is handled.
        await wait_until(pilot, lambda: pane.loaded and pane.loaded[1] is None, what="the base")
        await set_field(pilot, app, "temp", "0")

        # A switch to checkpoint 40 waits while the model is busy; it is stopped meanwhile.
        run = find_runs(finished_project / "runs")[0]
        with app.chat_lock:
            pane.query_one("#chat-adapter", Select).value = f"{run.name}:40"
            await wait_until(pilot, lambda: pane.model_loading, what="the switch under way")
            await pilot.press("escape")
            await wait_until(pilot, lambda: not pane.model_loading, what="the switch stopped")
            assert "load stopped" in status(app)
        await set_field(pilot, app, "max-tokens", "16")
        await ask(pilot, app, "who are you")
        assert PERSONA not in answer_shown(app)  # the stopped switch never happened

        # A long answer, stopped after its first words.
        await set_field(pilot, app, "max-tokens", "100000")
        app.query_one("#chat-prompt", Input).focus()
        await pilot.press(*"who are you", "enter")
        await wait_until(pilot, lambda: pane.answering and pane.answers[0].tokens > 0, what="words")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not pane.answering, what="the answer stopped")
        assert "stopped" in str(pane.query(".chat-meta").last().render())

        # The app still switches panes, and a second question gets its answer.
        await pilot.press("escape")  # out of the prompt: digits choose panes
        await pilot.press("4")
        assert active(app) == "checkpoints"
        await pilot.press("5")
        assert active(app) == "chat"
        await set_field(pilot, app, "max-tokens", "8")
        await ask(pilot, app, "say hello")
        assert pane.answers[0].finish_reason in ("stop", "length")


async def test_a_question_asked_before_the_models_are_listed_is_answered_once_they_are(
        finished_project, monkeypatch):
    # The pane lists its models in a worker; held here, as a busy machine holds it. A question
    # typed meanwhile was refused ("no model to ask") though the project's model was coming.
    listed = threading.Event()
    list_models = chat_pane.scan_choices
    monkeypatch.setattr(chat_pane, "scan_choices", lambda project: listed.wait(120) and list_models(project))
    app = TunedeckApp(project=finished_project)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            pane = await show_chat(pilot, app)
            await set_field(pilot, app, "max-tokens", "8")
            await pilot.press(*"who are you", "enter")
            await wait_until(pilot, lambda: pane.answering, what="the question taken")
            assert app.query_one("#chat-prompt", Input).value == ""
            assert "looking for models" in status(app)
            listed.set()
            await wait_until(pilot, lambda: pane.record, timeout=60, what="the answer")
            assert pane.answers[0].text and pane.answers[0].finish_reason in ("stop", "length")
            assert pane.loaded[0] == str(pane.query_one("#chat-model", Select).value)
    finally:
        listed.set()  # a failed test leaves no worker waiting


async def test_model_text_is_shown_literally(finished_project):
    app = TunedeckApp(project=finished_project)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await open_checkpoint_in_chat(pilot, app)
        await set_field(pilot, app, "max-tokens", "4")
        await ask(pilot, app, "who are you")
        # What the App does with every streamed piece of an answer, with a hostile one.
        pane.show_answer(0, MARKUP + "\nsecond line", 9, 12.5, "stop")
        await pilot.pause()
        shown = app.query_one("#chat-left-transcript", ChatTranscript).query(".chat-answer").last().render()
        assert "[bold red]x[/] [link=file:///etc/passwd]click[/link]" in shown.plain
        assert "^[]8;;file:///etc/passwd^[\\y^[]8;;^[\\ ^[[2J" in shown.plain
        assert "\x1b" not in shown.plain and shown.plain.endswith("\nsecond line")
        assert not shown.spans  # no style, no link: plain text


async def test_bad_settings_are_refused_before_asking(finished_project):
    app = TunedeckApp(project=finished_project)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await show_chat(pilot, app)
        await set_field(pilot, app, "top-p", "0")
        await pilot.press(*"hello", "enter")
        assert "top-p" in status(app) and not pane.answering and not pane.model_loading
        assert app.query_one("#chat-prompt", Input).value == "hello"  # kept, to send again


async def test_clear_and_save_the_transcript(tmp_path, finished_project):
    project = tmp_path / "project"
    shutil.copytree(finished_project, project)
    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await open_checkpoint_in_chat(pilot, app)
        await set_field(pilot, app, "temp", "0")
        await set_field(pilot, app, "max-tokens", "16")
        await set_field(pilot, app, "system", "be brief")
        await ask(pilot, app, "who are you")

        # Where the transcript goes cannot be written (a file in the way): one line, no crash,
        # and the conversation is still there to save once the way is clear.
        (project / "chats").write_text("not a directory")
        await pilot.press("ctrl+s")
        failure = status(app)
        assert failure.startswith(f"transcript not saved: {project / 'chats'}: ") and "\n" not in failure
        assert app.query_one("#chat-status").has_class("-failed")
        (project / "chats").unlink()

        await pilot.press("ctrl+s")
        saved = list((project / "chats").glob("chat-*.json"))
        assert len(saved) == 1 and str(saved[0]) in status(app)
        transcript = json.loads(saved[0].read_text())
        assert transcript["system"] == "be brief" and transcript["settings"]["temp"] == 0
        assert transcript["turns"][0]["user"] == "who are you"
        assert transcript["turns"][0]["answers"][0]["text"] == pane.answers[0].text != ""
        await pilot.press("ctrl+l")
        assert not pane.conversations[0].turns
        assert not app.query_one("#chat-left-transcript", ChatTranscript).children


async def test_a_checkpoint_is_evaluated_from_the_checkpoints_pane(tmp_path, finished_project):
    project = tmp_path / "project"
    shutil.copytree(finished_project, project)
    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.query_one("#checkpoint-table").row_count == 4, what="checkpoints")
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluationScreen), what="the evaluation screen")
        screen = app.screen
        await wait_until(pilot, lambda: screen.report is not None, timeout=120, what="the evaluation")
        report = screen.report
        assert report.adapter_loss < report.base_loss
        assert report.mean("adapter_f1") > report.mean("base_f1")
        rows = [[str(cell) for cell in screen.query_one("#evaluation-summary").get_row_at(i)]
                for i in range(4)]
        assert [r[0] for r in rows] == ["loss", "perplexity", "mean token F1", "exact match"]
        assert "better" in rows[0][3]
        assert list((project / "runs").glob("*/eval-0000040-test.json"))
        await pilot.press("escape")
        assert not isinstance(app.screen, EvaluationScreen)


async def test_closing_a_running_evaluation_stops_it(tmp_path, finished_project):
    project = tmp_path / "project"
    shutil.copytree(finished_project, project)
    # A test split far longer than the tiny model needs: batched, the usual one is answered
    # before the screen is up, and there would be nothing running left to close. The copied
    # run is pointed at a data directory of its own with it.
    data = project / "long-data"
    shutil.copytree(finished_project / "data", data)
    rows = (data / "test.jsonl").read_text().splitlines()
    (data / "test.jsonl").write_text("".join(rows[i % len(rows)] + "\n" for i in range(4000)))
    for run_file in (project / "runs").glob("*/*"):
        if run_file.suffix in (".yaml", ".toml", ".txt"):
            run_file.write_text(run_file.read_text().replace(str(finished_project / "data"), str(data)))
    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.query_one("#checkpoint-table").row_count == 4, what="checkpoints")
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(app.screen, EvaluationScreen), what="the evaluation screen")
        await wait_until(pilot, lambda: [w for w in app.workers if w.group == "evaluate"],
                         what="the evaluation worker")
        [evaluation] = [w for w in app.workers if w.group == "evaluate"]
        assert evaluation.state == WorkerState.RUNNING
        await pilot.press("escape")
        assert not isinstance(app.screen, EvaluationScreen)
        # Stopped, not left to finish unseen: the worker ends, and no report is ever written
        # (a finished evaluation writes eval-0000040-test.json into the run).
        await wait_until(pilot, lambda: evaluation.is_finished, timeout=120, what="the evaluation to end")
        assert evaluation.state == WorkerState.CANCELLED
        assert not list((project / "runs").glob("*/eval-*.json"))
        await pilot.press("5")
        assert active(app) == "chat"
