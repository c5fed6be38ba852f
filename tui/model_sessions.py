"""The App's model sessions: the loaded chat model, and the workers that load it, answer with it
and evaluate checkpoints.

They belong to the App, not to a pane: switching panes must not kill a load or an answer. The
workers only post messages; every request gets a serial number, and a message from a request
that was stopped or replaced is dropped here, so a cancelled load's model is never used.
One lock keeps the chat model to one worker at a time (a stopped answer may still be finishing
its step when the next request starts).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from textual import work
from textual.worker import Worker, WorkerState, get_current_worker

from tunedeck.core.adapters import AdapterRef

from .messages import EvaluationFinished, EvaluationProgressed, EvaluationRequested, EvaluationStopRequested

# The chat's modules are imported where they are used, not here: the App imports this module
# before its first frame, and the Chat pane is built after it.
if TYPE_CHECKING:
    from tunedeck.core.chat import Chunk

    from .panes.chat import ChatPane
    from .panes.chat.evaluation import EvaluationScreen
    from .panes.chat.messages import (AnswerStreamed, ChatAsked, ChatModelLoaded, ChatModelProgressed,
                                      ChatModelRequested, ChatStopRequested)

# Answers to the first prompts of the split that an evaluation from the app generates and scores.
EVALUATION_SAMPLES = 5
EVALUATION_MAX_TOKENS = 64


class ModelSessions:
    """Mixed into the App: it owns the chat model and the chat and evaluation workers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chat_model = None  # a tunedeck.core.chat.ChatModel, once one has loaded
        self.chat_lock = threading.Lock()  # held by the worker using the chat model
        self._load_serial = 0
        self._answer_serial = 0
        self._evaluation_serial = 0

    def _chat_pane(self) -> Optional["ChatPane"]:
        panes = self.query("#chat-pane")
        return panes.first() if panes else None

    # -- loading ---------------------------------------------------------------------------------
    def on_chat_model_requested(self, message: ChatModelRequested) -> None:
        self._stop_answer()  # the model is about to change under it
        self._load_serial += 1
        self._load_chat_model(self._load_serial, message.model, message.adapter, self.chat_model)

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-model")
    def _load_chat_model(self, serial: int, spec: str, adapter: Optional[AdapterRef], current) -> None:
        from tunedeck.core.chat import ChatModel, LoadCancelled
        from tunedeck.core.models import resolve_model

        from .panes.chat.messages import ChatModelLoaded, ChatModelProgressed

        worker = get_current_worker()
        cancelled = lambda: worker.is_cancelled  # noqa: E731

        def progress(text: str, fraction: Optional[float] = None) -> None:
            self.post_message(ChatModelProgressed(serial, text, fraction))

        model_dir = resolve_model(spec, progress=progress)
        try:
            if current is not None and current.model_dir == model_dir:
                with self.chat_lock:  # the base stays; only the adapter changes
                    if cancelled():
                        return  # stopped while the model was busy: leave it as it is
                    reloaded = current.set_adapter(adapter, progress, cancelled)
                self.post_message(ChatModelLoaded(serial, current, spec, reloaded))
            else:
                chat = ChatModel(model_dir, adapter, progress, cancelled)
                self.post_message(ChatModelLoaded(serial, chat, spec, True))
        except LoadCancelled:
            pass  # the pane was told when the user stopped it

    def on_chat_model_progressed(self, message: ChatModelProgressed) -> None:
        if message.serial == self._load_serial and (pane := self._chat_pane()):
            pane.model_progressed(message.text, message.fraction)

    def on_chat_model_loaded(self, message: ChatModelLoaded) -> None:
        if message.serial != self._load_serial:
            return
        self.chat_model = message.chat
        if pane := self._chat_pane():
            pane.model_ready(message.model, message.chat.adapter, message.reloaded)

    # -- answering -------------------------------------------------------------------------------
    def on_chat_asked(self, message: ChatAsked) -> None:
        pane = self._chat_pane()
        if self.chat_model is None:
            if pane:
                pane.answer_failed("no model is loaded")
            return
        self._answer_serial += 1
        self._answer(self._answer_serial, self.chat_model, message.sides, message.conversations,
                     message.settings)

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-answer")
    def _answer(self, serial: int, chat, sides: list, conversations: list, settings) -> None:
        from tunedeck.core.chat import LoadCancelled

        from .panes.chat.messages import AnswerStreamed, ChatModelProgressed

        worker = get_current_worker()
        cancelled = lambda: worker.is_cancelled  # noqa: E731
        texts = [""] * len(sides)

        def post(side: int, chunk: Chunk) -> None:
            texts[side] += chunk.text
            self.post_message(AnswerStreamed(serial, side, texts[side], chunk.tokens,
                                             chunk.tokens_per_sec, chunk.finish_reason))

        def progress(text: str, fraction: Optional[float] = None) -> None:
            self.post_message(ChatModelProgressed(self._load_serial, text, fraction))

        with self.chat_lock:
            try:
                if len(sides) == 1:
                    chat.set_adapter(sides[0])
                    for chunk in chat.stream(conversations[0], settings, cancelled):
                        post(0, chunk)
                else:
                    for side, chunk in chat.compare(sides, conversations, settings, cancelled, progress):
                        post(side, chunk)
            except LoadCancelled:
                pass  # a stopped comparison was still loading its second model

    def on_answer_streamed(self, message: AnswerStreamed) -> None:
        if message.serial == self._answer_serial and (pane := self._chat_pane()):
            pane.show_answer(message.side, message.text, message.tokens, message.tokens_per_sec,
                             message.finish_reason)

    def _stop_answer(self) -> None:
        self._answer_serial += 1
        self.workers.cancel_group(self, "chat-answer")

    def on_chat_stop_requested(self, message: ChatStopRequested) -> None:
        pane = self._chat_pane()
        if pane is None:
            return
        if pane.model_loading:
            self._load_serial += 1
            self.workers.cancel_group(self, "chat-model")
            pane.model_stopped()
        if pane.answering:
            self._stop_answer()
            pane.answer_stopped()

    # -- evaluating ------------------------------------------------------------------------------
    def on_evaluation_requested(self, message: EvaluationRequested) -> None:
        from .panes.chat.evaluation import EvaluationScreen

        run = self.followed  # the App's followed run, whose checkpoint this is
        if run is None:
            return
        self._evaluation_serial += 1
        checkpoint = message.checkpoint
        adapter = AdapterRef(checkpoint.path.parent, checkpoint.path)
        self.push_screen(EvaluationScreen(self._evaluation_serial, run.name, checkpoint.iteration))
        self._evaluate(self._evaluation_serial, run, adapter)

    @work(thread=True, exclusive=True, exit_on_error=False, group="evaluate")
    def _evaluate(self, serial: int, run, adapter: AdapterRef) -> None:
        from tunedeck.core.evaluate import evaluate_run, save_report
        from tunedeck.core.training_setup import read_mlx_args

        worker = get_current_worker()
        data = Path(read_mlx_args(run, None)["data"])
        # The test split is what evaluation is for; without one, the validation split still tells.
        split = "test" if (data / "test.jsonl").exists() else "valid"

        def progress(text: str, fraction: Optional[float] = None) -> None:
            self.post_message(EvaluationProgressed(serial, f"{split} split: {text}", fraction))

        try:
            report = evaluate_run(run, adapter, split=split, generate=EVALUATION_SAMPLES,
                                  max_tokens=EVALUATION_MAX_TOKENS, progress=progress,
                                  cancelled=lambda: worker.is_cancelled)
        except KeyboardInterrupt:
            return  # evaluate_run's way of saying it was cancelled
        self.post_message(EvaluationFinished(serial, report, save_report(run, report)))

    def _evaluation_screen(self, serial: int) -> Optional["EvaluationScreen"]:
        from .panes.chat.evaluation import EvaluationScreen

        for screen in self.screen_stack:
            if isinstance(screen, EvaluationScreen) and screen.serial == serial:
                return screen
        return None

    def on_evaluation_progressed(self, message: EvaluationProgressed) -> None:
        if screen := self._evaluation_screen(message.serial):
            screen.progressed(message.text, message.fraction)

    def on_evaluation_finished(self, message: EvaluationFinished) -> None:
        if screen := self._evaluation_screen(message.serial):
            screen.finished(message.report, message.path)
        else:
            self.notify(f"evaluation saved to {message.path}")

    def on_evaluation_stop_requested(self, message: EvaluationStopRequested) -> None:
        if message.serial == self._evaluation_serial:
            self.workers.cancel_group(self, "evaluate")

    # -- failures (the App's own handler shows the error) ---------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        text = str(event.worker.error)
        group = event.worker.group
        if group == "chat-model" and (pane := self._chat_pane()):
            pane.model_failed(text)
        elif group == "chat-answer" and (pane := self._chat_pane()):
            pane.answer_failed(text)
        elif group == "evaluate":
            from .panes.chat.evaluation import EvaluationScreen

            for screen in self.screen_stack:
                if isinstance(screen, EvaluationScreen):
                    screen.failed(text)
