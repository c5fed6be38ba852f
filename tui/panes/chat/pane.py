"""The Chat pane: talk to a base model with an adapter, or compare two sides on one prompt.

What the user picks here is posted upward; the App loads the model and answers in its own
workers (a load or an answer survives switching panes) and tells the pane what came of it.
The pane keeps the conversations and the transcript. Answers are shown literally: whatever a
model writes, markup or escape sequences included, is text on the screen.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, ProgressBar, Select, Static

from tunedeck.core.adapters import AdapterRef
from tunedeck.core.chat import Conversation, GenerationSettings, save_transcript
from tunedeck.core.chat_choices import BASE, AdapterChoice, model_label, scan_choices

from .answer_settings import AnswerSettings
from .messages import ChatAsked, ChatModelRequested, ChatStopRequested, ChoicesScanned
from .transcript import Answer, ChatTranscript
from ...widgets.progress import ProgressLine


class ChatPane(Vertical):
    PANE_TITLE = "Chat"
    BINDINGS = [
        Binding("escape", "stop", "Stop", id="chat-stop"),
        Binding("ctrl+o", "toggle_compare", "Compare", id="chat-compare"),
        Binding("ctrl+l", "clear", "Clear", id="chat-clear"),
        Binding("ctrl+s", "save", "Save", id="chat-save"),
    ]
    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane .chat-row { height: 1; }
    ChatPane .chat-label { padding: 0 1; color: $text-muted; }
    ChatPane #chat-model, ChatPane #chat-adapter { width: 1fr; }
    ChatPane #chat-temp, ChatPane #chat-top-p { width: 6; }
    ChatPane #chat-max-tokens { width: 7; }
    ChatPane #chat-system { width: 1fr; }
    ChatPane #chat-status { width: 1fr; padding: 0 1; background: $surface; color: $foreground; }
    ChatPane #chat-status.-failed { color: $error; }
    ChatPane #chat-progress { width: 32; display: none; background: $surface; }
    ChatPane.-loading #chat-progress { display: block; }
    ChatPane #chat-columns { height: 1fr; }
    ChatPane .chat-side { width: 1fr; }
    ChatPane #chat-right { display: none; border-left: vkey $panel; }
    ChatPane.-compare #chat-right { display: block; }
    ChatPane .chat-title { height: 1; padding: 0 1; background: $panel; color: $foreground; }
    ChatPane ChatTranscript { height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
    ChatPane .chat-user { color: $accent; text-style: bold; margin-top: 1; }
    ChatPane .chat-meta { color: $text-muted; }
    """

    def __init__(self, project: Optional[Path] = None, **kwargs):
        super().__init__(**kwargs)
        self.project = Path(project).resolve() if project else None
        self.models: list[tuple[str, str]] = []  # (label, model directory or "demo")
        self.adapters: dict[str, AdapterChoice] = {BASE: AdapterChoice("none (the base model)", None, None)}
        self.loaded: Optional[tuple[str, Optional[AdapterRef]]] = None  # what the App has loaded
        self.requested: Optional[tuple[str, Optional[AdapterRef]]] = None
        self.model_loading = False
        self.answering = False
        self.compare = False
        self.conversations = [Conversation(), Conversation()]
        self.answers: list[Answer] = []
        self.question = ""
        self.settings = GenerationSettings()  # of the question under way
        self.asked: list[Optional[AdapterRef]] = []  # its sides
        self.waiting = False  # asked while the model was still loading: sent once it has
        # The models are listed in a worker: a question typed before the list came waits for it
        # rather than being told there is no model to ask.
        self.models_listed = False
        self.record: list[dict] = []  # the transcript, turn by turn, for saving
        self._wanted: Optional[tuple[Optional[str], Path]] = None  # "open in Chat" before the scan

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(classes="chat-row"):
            yield Label("model", classes="chat-label")
            yield Select([], prompt="no model found", compact=True, id="chat-model")
            yield Label("adapter", classes="chat-label")
            yield Select(self._adapter_options(), value=BASE, allow_blank=False, compact=True,
                         id="chat-adapter")
        yield AnswerSettings(classes="chat-row")
        with Horizontal(classes="chat-row"):
            yield Static(Text("no model loaded: pick one, or just ask (the chosen model loads first)"),
                         id="chat-status")
            # A bar without a total animates 15 times a second even while hidden: it has one
            # only while a load of unknown length goes on.
            yield ProgressLine(total=100, id="chat-progress")
        with Horizontal(id="chat-columns"):
            with Vertical(classes="chat-side", id="chat-left"):
                yield Static(Text(""), classes="chat-title", id="chat-left-title")
                yield ChatTranscript(id="chat-left-transcript")
            with Vertical(classes="chat-side", id="chat-right"):
                yield Select(self._adapter_options(), value=BASE, allow_blank=False, compact=True,
                             id="chat-compare-with")
                yield ChatTranscript(id="chat-right-transcript")
        yield Input(placeholder="ask the model (enter sends; esc leaves the field)", id="chat-prompt")

    def on_mount(self) -> None:
        self._show_titles()
        self._scan()

    def focus_main(self) -> None:
        self.query_one("#chat-prompt", Input).focus()
        self._scan()  # runs may have saved checkpoints since

    def _adapter_options(self) -> list[tuple[str, str]]:
        return [(choice.label, key) for key, choice in self.adapters.items()]

    # -- choices ---------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-choices")
    def _scan(self) -> None:
        self.post_message(ChoicesScanned(*scan_choices(self.project)))

    @on(ChoicesScanned)
    def _choices_scanned(self, message: ChoicesScanned) -> None:
        self.adapters = message.adapters
        model_select = self.query_one("#chat-model", Select)
        keep_model = self._chosen_model()
        self.models = list(message.models)
        if keep_model is not None and keep_model not in [v for _, v in self.models]:
            self.models.append((model_label(keep_model), keep_model))
        with self.prevent(Select.Changed):
            model_select.set_options(self.models)
            if keep_model is not None:
                model_select.value = keep_model
            elif self.models:
                model_select.value = self.models[0][1]
            for select_id in ("#chat-adapter", "#chat-compare-with"):
                select = self.query_one(select_id, Select)
                keep = select.value
                select.set_options(self._adapter_options())
                select.value = keep if keep in self.adapters else BASE
        if self._wanted is not None:
            model, path = self._wanted
            self._wanted = None
            self._choose(model, path)
        self._show_titles()
        first_list = not self.models_listed
        self.models_listed = True
        if first_list and self.waiting and not self.model_loading:
            if self._chosen_model() is None:
                self._drop_waiting()
                self._status("no model to ask: pick one above", failed=True)
            else:
                self._ask_when_loaded(self._chosen_model())

    def use(self, model: Optional[str], adapter: Path) -> None:
        """"Open in Chat": this run's model with this checkpoint, loaded now."""
        path = Path(adapter).resolve()
        self._choose(model, path)
        self._request_model()
        self._wanted = (model, path)  # chosen again once the scan has listed it
        self._scan()

    def _choose(self, model: Optional[str], path: Path) -> None:
        """Show ``model`` and the checkpoint at ``path`` as chosen (adding them if not listed)."""
        key = next((k for k, c in self.adapters.items() if k.split(":")[-1].isdigit()
                    and c.adapter is not None and c.adapter.weights == path), None)
        if key is None:
            key = str(path)
            self.adapters[key] = AdapterChoice(f"{path.parent.parent.name} · {path.name}",
                                               AdapterRef(path.parent, path), model)
        with self.prevent(Select.Changed):
            if model:
                self._select_model(model)
            adapter_select = self.query_one("#chat-adapter", Select)
            adapter_select.set_options(self._adapter_options())
            adapter_select.value = key
        self._show_titles()

    def _select_model(self, model: str) -> None:
        select = self.query_one("#chat-model", Select)
        if model not in [value for _, value in self.models]:
            self.models.append((model_label(model), model))
            select.set_options(self.models)
        select.value = model

    def _chosen_model(self) -> Optional[str]:
        value = self.query_one("#chat-model", Select).value
        return None if value is Select.NULL else value

    def _chosen(self, select_id: str) -> AdapterChoice:
        value = self.query_one(select_id, Select).value
        return self.adapters.get(value, self.adapters[BASE])

    @on(Select.Changed, "#chat-model")
    def _model_chosen(self) -> None:
        adapter = self._chosen("#chat-adapter")
        if adapter.model is not None and adapter.model != self._chosen_model():
            with self.prevent(Select.Changed):  # that adapter was trained on another model
                self.query_one("#chat-adapter", Select).value = BASE
        self._request_model()

    @on(Select.Changed, "#chat-adapter")
    def _adapter_chosen(self) -> None:
        adapter = self._chosen("#chat-adapter")
        if adapter.model is not None and adapter.model != self._chosen_model():
            with self.prevent(Select.Changed):
                self._select_model(adapter.model)
        self._request_model()

    @on(Select.Changed, "#chat-compare-with")
    def _compare_chosen(self) -> None:
        self._show_titles()

    def _request_model(self) -> None:
        model = self._chosen_model()
        self._show_titles()
        if model is None:
            return
        wanted = (model, self._chosen("#chat-adapter").adapter)
        if wanted == self.requested and (self.model_loading or wanted == self.loaded):
            return
        self.requested = wanted
        self.model_loading = True
        self.set_class(True, "-loading")
        self._status(f"loading {model_label(model)}…")
        self.query_one("#chat-progress", ProgressBar).update(total=None, progress=0)
        self.refresh_bindings()
        self.post_message(ChatModelRequested(*wanted))

    def _label_of(self, adapter: AdapterRef) -> str:
        """How the choices name ``adapter``: as chosen, else as first listed."""
        chosen = self._chosen("#chat-adapter")
        if chosen.adapter == adapter:
            return chosen.label
        return next((c.label for c in self.adapters.values() if c.adapter == adapter), adapter.label)

    def _show_titles(self) -> None:
        left = self._chosen("#chat-adapter").label
        self.query_one("#chat-left-title", Static).update(Text(left if self.compare else f"adapter: {left}"))

    # -- what the App tells the pane -------------------------------------------------------------
    def model_progressed(self, text: str, fraction: Optional[float]) -> None:
        bar = self.query_one("#chat-progress", ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=100 * fraction)
        self._status(text)

    def model_ready(self, model: str, adapter: Optional[AdapterRef], reloaded: bool) -> None:
        self.loaded = self.requested = (model, adapter)
        self.model_loading = False
        self.set_class(False, "-loading")
        self.query_one("#chat-progress", ProgressBar).update(total=100, progress=0)
        self.refresh_bindings()
        how = "" if reloaded else " (the base model stayed loaded)"
        with_adapter = f" + {self._label_of(adapter)}" if adapter else " (no adapter)"
        self._status(f"ready: {model_label(model)}{with_adapter}{how}")
        if self.waiting:
            self._send()

    def model_failed(self, text: str) -> None:
        self._loading_ended()
        self._status(f"could not load: {text}", failed=True)

    def model_stopped(self) -> None:
        self._loading_ended()
        still = f"; still using {model_label(self.loaded[0])}" if self.loaded else ""
        self._status(f"load stopped{still}")

    def _loading_ended(self) -> None:
        """A load that did not happen: the choices show again what is loaded."""
        self.model_loading = False
        self.query_one("#chat-progress", ProgressBar).update(total=100, progress=0)
        self.requested = self.loaded
        self.set_class(False, "-loading")
        self.refresh_bindings()
        self._drop_waiting()
        if self.loaded is not None:
            model, adapter = self.loaded
            key = next((k for k, c in self.adapters.items() if c.adapter == adapter), BASE)
            with self.prevent(Select.Changed):
                self._select_model(model)
                self.query_one("#chat-adapter", Select).value = key
            self._show_titles()

    def _drop_waiting(self) -> None:
        """The question waiting for a load that did not happen is not asked."""
        if not self.waiting:
            return
        self.waiting = False
        for answer, transcript in zip(self.answers, self._transcripts()):
            answer.finish_reason = "not asked"
            transcript.show_answer("", "not asked: no model loaded")
        self._answer_ended()

    def show_answer(self, side: int, text: str, tokens: int, tokens_per_sec: float,
                    finish_reason: Optional[str]) -> None:
        """One side's answer so far; every streamed answer reaches the screen through here."""
        if side >= len(self.answers):
            return
        answer = self.answers[side]
        answer.text, answer.tokens, answer.tokens_per_sec = text, tokens, tokens_per_sec
        answer.finish_reason = finish_reason
        self._transcripts()[side].show_answer(text, answer.meta())
        speeds = " · ".join(f"{a.tokens_per_sec:.1f} tok/s" for a in self.answers)
        if all(a.finish_reason for a in self.answers):
            self._answer_ended()
            self._status(f"answered: {speeds}")
        else:
            self._status(f"answering… {speeds} (esc stops)")

    def answer_stopped(self) -> None:
        self.waiting = False  # stopped before it was sent: it never will be
        for answer, transcript in zip(self.answers, self._transcripts()):
            answer.finish_reason = answer.finish_reason or "stopped"
            transcript.show_answer(answer.text, answer.meta())
        self._answer_ended()
        self._status("stopped")

    def answer_failed(self, text: str) -> None:
        self.waiting = False
        for answer, transcript in zip(self.answers, self._transcripts()):
            answer.finish_reason = answer.finish_reason or "failed"
            transcript.show_answer(answer.text, answer.meta())
        self._answer_ended()
        self._status(f"could not answer: {text}", failed=True)

    def _answer_ended(self) -> None:
        if not self.answering:
            return
        self.answering = False
        self.refresh_bindings()
        for side, answer in enumerate(self.answers):
            if answer.finish_reason not in ("failed", "not asked"):  # a stopped answer was seen: it stays
                self.conversations[side].add(self.question, answer.text)
        self.record.append({
            "user": self.question,
            "answers": [{"adapter": str(ref.weights) if ref else None, "text": a.text,
                         "tokens": a.tokens, "tokens_per_sec": round(a.tokens_per_sec, 2),
                         "finish_reason": a.finish_reason} for ref, a in zip(self.asked, self.answers)]})

    # -- asking ------------------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        if self.answering:
            self.notify("still answering: esc stops it", severity="warning")
            return
        try:
            settings = self.query_one(AnswerSettings).sampling()
        except ValueError as problem:
            self._status(str(problem), failed=True)
            return
        model = self._chosen_model()
        if model is None and self.models_listed:
            self._status("no model to ask: pick one above", failed=True)
            return
        event.input.value = ""
        self._ask(question, settings)
        if model is None:  # the list of models is still coming: the question waits for it
            self.waiting = True
            for transcript in self._transcripts():
                transcript.show_answer("", "waiting for the list of models…")
            self._status("looking for models…")
        else:
            self._ask_when_loaded(model)

    def _ask_when_loaded(self, model: str) -> None:
        """Send the question under way now, or once the chosen model has loaded."""
        if self.model_loading or self.loaded != (model, self._chosen("#chat-adapter").adapter):
            self.waiting = True
            for transcript in self._transcripts():
                transcript.show_answer("", "waiting for the model to load…")
            self._request_model()
        else:
            self._send()

    def _sides(self) -> list[Optional[AdapterRef]]:
        sides = [self._chosen("#chat-adapter").adapter]
        if self.compare:
            sides.append(self._chosen("#chat-compare-with").adapter)
        return sides

    def _transcripts(self) -> list[ChatTranscript]:
        ids = ["#chat-left-transcript", "#chat-right-transcript"][:2 if self.compare else 1]
        return [self.query_one(i, ChatTranscript) for i in ids]

    def _ask(self, question: str, settings: GenerationSettings) -> None:
        """Show the question on every side; it is under way from now on."""
        self.question, self.settings = question, settings
        self.answers = [Answer() for _ in self._transcripts()]
        for transcript in self._transcripts():
            transcript.add_turn(question)
        self.answering = True
        self.refresh_bindings()

    def _send(self) -> None:
        """Ask the App for the answers, with the sides and the system prompt chosen now."""
        self.waiting = False
        self.asked = self._sides()
        system = self.query_one(AnswerSettings).system_prompt()
        for conversation in self.conversations:
            conversation.system = system
        self._status("answering… (esc stops)")
        conversations = self.conversations[:len(self.asked)]
        self.post_message(ChatAsked(self.asked, [c.messages(self.question) for c in conversations],
                                    self.settings))

    def _status(self, text: str, failed: bool = False) -> None:
        status = self.query_one("#chat-status", Static)
        status.update(Text(text))
        status.set_class(failed, "-failed")

    # -- keys ----------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if action == "stop":
            # Nothing to stop: escape goes on to the App (it leaves the text field).
            return self.model_loading or self.answering
        return True

    def action_stop(self) -> None:
        self.post_message(ChatStopRequested())

    def action_toggle_compare(self) -> None:
        if self.answering:
            self.notify("wait for the answer, or stop it (esc)", severity="warning")
            return
        self.compare = not self.compare
        self.set_class(self.compare, "-compare")
        self._clear()
        self._show_titles()
        self._status("compare: one prompt, two sides; a new conversation" if self.compare
                     else "compare off: a new conversation")

    def action_clear(self) -> None:
        if self.answering:
            self.notify("wait for the answer, or stop it (esc)", severity="warning")
            return
        self._clear()
        self._status("cleared: a new conversation")

    def _clear(self) -> None:
        for conversation in self.conversations:
            conversation.clear()
        for transcript in self.query(ChatTranscript):
            transcript.clear()
        self.record.clear()

    def action_save(self) -> None:
        if not self.record:
            self.notify("nothing to save yet", severity="warning")
            return
        model = self.loaded[0] if self.loaded else self._chosen_model()
        sides = [self._chosen("#chat-adapter")]
        if self.compare:
            sides.append(self._chosen("#chat-compare-with"))
        directory = (self.project or Path.cwd()) / "chats"
        try:
            path = save_transcript(directory, {
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "model": model,
                "sides": [side.label for side in sides],
                "system": self.query_one(AnswerSettings).system_prompt(),
                "settings": vars(self.settings),
                "turns": self.record,
            })
        except OSError as exc:  # a full disk, a read-only project: say so, keep the chat
            self._status(f"transcript not saved: {directory}: {exc.strerror or exc}", failed=True)
            return
        if self.app.is_web:
            # In a browser tab the file is on the server: the browser downloads a copy too.
            self.app.deliver_text(path, save_filename=path.name, mime_type="application/json",
                                  encoding="utf-8")
            self._status(f"transcript saved to {path} and sent to the browser")
        else:
            self._status(f"transcript saved to {path}")
        self.notify(f"transcript saved to {path}")
