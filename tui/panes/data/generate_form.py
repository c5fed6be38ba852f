"""The Generate form of the Data pane: ``tunedeck data generate`` with its main options.

Questions on a topic, or answers to a prompts file, from the project's model (in this process)
or an OpenAI-compatible endpoint, in the form's own worker. Running it again after a stop
resumes: what is written stays and only the rest is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Button, Input, Label, Select
from textual.worker import get_current_worker

from tunedeck.core.data.convert import parse_split
from tunedeck.core.errors import BadInput, WorkFailed
from tunedeck.core.text import plural

from .background import TaskView, in_own_thread
from .form_rows import ActionRow, choice_row, numbers_row, text_row, typed_path
from .messages import GenerationFinished, GenerationWritten
from .task_line import TaskLine

KINDS = (("answers to a prompts file", "answers"), ("questions on a topic", "questions"))


@dataclass(frozen=True)
class GenerationRequest:
    kind: str                     # "questions" or "answers"
    out: Path
    model: Optional[str]          # a local model, or the model's name at the endpoint
    endpoint: Optional[str]
    max_tokens: int
    temp: float
    topic: str = ""
    count: int = 0
    prompts: Optional[Path] = None
    split: Optional[tuple] = None


class GenerateForm(TaskView, VerticalScroll):
    DEFAULT_CSS = """
    GenerateForm { height: 1fr; scrollbar-size-vertical: 1; }
    GenerateForm FieldRow > Select { width: 30; }
    GenerateForm #generate-numbers > Input { width: 10; }
    GenerateForm ActionRow > Button { min-width: 22; }
    """

    def __init__(self, base: Optional[Path], model: Optional[str], prompts: Optional[Path],
                 out: Optional[Path], **kwargs):
        super().__init__(**kwargs)
        self.base = base  # relative paths are from here (the project directory)
        self._model = model or ""
        self._prompts = str(prompts) if prompts else ""
        self._out = str(out) if out else ""

    def compose(self) -> ComposeResult:
        yield choice_row(("make", Select(KINDS, value="answers", allow_blank=False, compact=True,
                                         id="generate-kind")))
        yield text_row("prompts", self._prompts,
                       ".txt (one a line) or .jsonl (prompt or messages)", "generate-prompts",
                       row_id="generate-prompts-field")
        yield text_row("topic", "", "what the questions are about", "generate-topic",
                       row_id="generate-topic-field")
        yield text_row("output", self._out,
                       "a directory (train/valid/test.jsonl) or a .jsonl file", "generate-out")
        yield text_row("model", self._model, "a local model, or its name at the endpoint",
                       "generate-model")
        yield text_row("endpoint", "", "empty: the model runs here; or an OpenAI-compatible "
                       "URL, e.g. http://127.0.0.1:11434/v1", "generate-endpoint")
        yield numbers_row([("count", "20", "generate-count"),
                           ("max tokens", "512", "generate-max-tokens"),
                           ("temp", "0", "generate-temp"), ("split", "80,10,10", "generate-split")],
                          "generate-numbers")
        yield ActionRow(Label("x stops; running it again resumes where it stopped"),
                        Button("Generate (ctrl+r)", compact=True, variant="primary",
                               id="generate-run"))
        yield TaskLine(id="generate-task")

    def on_mount(self) -> None:
        self._show_fields("answers")

    @on(Select.Changed, "#generate-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        self._show_fields(str(event.value))
        temp = self.query_one("#generate-temp", Input)
        # Questions want variety; answers the model's best guess.
        if temp.value in ("0", "0.8"):
            temp.value = "0.8" if event.value == "questions" else "0"

    def _show_fields(self, kind: str) -> None:
        self.query_one("#generate-prompts-field").display = kind == "answers"
        self.query_one("#generate-topic-field").display = kind == "questions"

    def focus_first(self) -> None:
        self.query_one("#generate-kind", Select).focus()

    def request(self, base: Optional[Path]) -> GenerationRequest:
        """The form as a generation; BadInput naming the field when a value is wrong.
        Relative paths are taken from ``base`` (the project directory)."""
        def value(name: str) -> str:
            return self.query_one(f"#generate-{name}", Input).value.strip()

        def number(name: str, label: str, kind=int):
            text = value(name)
            try:
                return kind(text)
            except ValueError:
                raise BadInput(f"{label}: {text!r} is not a number") from None

        kind = str(self.query_one("#generate-kind", Select).value)
        out = value("out")
        if not out:
            raise BadInput("output: name a file or directory to write to")
        model, endpoint = value("model") or None, value("endpoint") or None
        if not model and not endpoint:
            raise BadInput("model: name a local model, or give an endpoint")
        common = dict(kind=kind, out=typed_path(out, base), model=model, endpoint=endpoint,
                      max_tokens=number("max-tokens", "max tokens"),
                      temp=number("temp", "temp", float))
        if kind == "questions":
            if not value("topic"):
                raise BadInput("topic: say what the questions are about")
            return GenerationRequest(topic=value("topic"), count=number("count", "count"),
                                     **common)
        if not value("prompts"):
            raise BadInput("prompts: name the file of prompts to answer")
        split = None
        target = typed_path(out, base)
        if target.is_dir() or target.suffix.lower() not in (".jsonl", ".json"):
            split = parse_split(value("split") or "80,10,10")
        return GenerationRequest(prompts=typed_path(value("prompts"), base), split=split, **common)

    # -- running it ---------------------------------------------------------------------------
    @on(Button.Pressed, "#generate-run")
    @on(Input.Submitted)
    def run(self) -> None:
        """Start (or resume: what is written is kept and skipped) the form's generation."""
        request = self.request_to_run(self.base)
        if request is None:
            return
        where = request.endpoint or request.model
        self.task_line.progress(f"generating {request.kind} with {where}…", None)
        self.worker = self._generate(request)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-generate")
    def _generate(self, request: GenerationRequest) -> None:
        from tunedeck.core.data.generate import generate_answers, generate_questions
        from tunedeck.core.data.model_sources import open_source

        worker = get_current_worker()
        progress, cancel = self.reporter(worker), worker.cancelled_event

        def written(paths: list) -> None:
            self.post_message(GenerationWritten(paths))

        def generate():
            source = open_source(model=request.model, adapter=None,
                                 endpoint=request.endpoint, progress=progress)
            try:
                if request.kind == "questions":
                    return generate_questions(
                        source, request.topic, request.count, request.out,
                        max_tokens=request.max_tokens, temp=request.temp,
                        seed=None if request.endpoint else 0, progress=progress,
                        cancel=cancel, on_written=written)
                return generate_answers(
                    source, request.prompts, request.out,
                    max_tokens=request.max_tokens, temp=request.temp,
                    seed=None if request.endpoint else 0, split=request.split,
                    progress=progress, cancel=cancel, on_written=written)
            finally:
                source.close()

        try:
            result = in_own_thread(generate)
        except (BadInput, WorkFailed) as exc:
            self.post_message(GenerationFinished(worker, request, error=str(exc)))
        else:
            self.post_message(GenerationFinished(worker, request, result))

    def on_generation_finished(self, message: GenerationFinished) -> None:
        if self.ends_here(message):
            return
        result = message.result
        stopped = " · stopped: generate again to resume" if result.cancelled else ""
        if message.request.kind == "questions":
            message.stop()
            have = result.already + result.written
            self.task_line.finish(f"{plural(have, 'question')} in {result.path.name} "
                                  f"({result.written:,} new){stopped}",
                                  "" if result.cancelled or have < result.wanted else "succeeded")
            return
        # Answers: on to the pane too, which shows the answers' quality flags with the check.
        failed = f" · {plural(len(result.failed), 'prompt')} failed" if result.failed else ""
        self.task_line.finish(
            f"{plural(result.written, 'answer')} written, {result.already:,} from before · "
            f"{plural(len(result.flags), 'flagged answer')} (p: Problems){failed}{stopped}",
            "failed" if result.failed else ("" if result.cancelled else "succeeded"))
