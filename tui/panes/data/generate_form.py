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
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select
from textual.worker import get_current_worker

from tunedeck.core.data.convert import parse_split
from tunedeck.core.errors import BadInput, WorkFailed

from .background import TaskView, mlx_streams_released
from .content import plural
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
    GenerateForm .generate-field { height: 1; }
    GenerateForm .generate-field > Label { width: 12; padding: 0 1; color: $text-muted; }
    GenerateForm .generate-field > Input { width: 1fr; }
    GenerateForm .generate-field > Select { width: 30; }
    GenerateForm #generate-numbers > Label { width: auto; }
    GenerateForm #generate-numbers > Input { width: 10; }
    GenerateForm #generate-actions { height: 1; }
    GenerateForm #generate-actions > Label { width: 1fr; padding: 0 1; color: $text-muted; }
    GenerateForm #generate-actions > Button { min-width: 22; }
    """

    def __init__(self, base: Optional[Path], model: Optional[str], prompts: Optional[Path],
                 out: Optional[Path], **kwargs):
        super().__init__(**kwargs)
        self.base = base  # relative paths are from here (the project directory)
        self._model = model or ""
        self._prompts = str(prompts) if prompts else ""
        self._out = str(out) if out else ""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="generate-field"):
            yield Label("make")
            yield Select(KINDS, value="answers", allow_blank=False, compact=True,
                         id="generate-kind")
        with Horizontal(classes="generate-field", id="generate-prompts-field"):
            yield Label("prompts")
            yield Input(self._prompts, placeholder=".txt (one a line) or .jsonl (prompt or "
                        "messages)", compact=True, id="generate-prompts")
        with Horizontal(classes="generate-field", id="generate-topic-field"):
            yield Label("topic")
            yield Input("", placeholder="what the questions are about", compact=True,
                        id="generate-topic")
        with Horizontal(classes="generate-field"):
            yield Label("output")
            yield Input(self._out, placeholder="a directory (train/valid/test.jsonl) or a "
                        ".jsonl file", compact=True, id="generate-out")
        with Horizontal(classes="generate-field"):
            yield Label("model")
            yield Input(self._model, placeholder="a local model, or its name at the endpoint",
                        compact=True, id="generate-model")
        with Horizontal(classes="generate-field"):
            yield Label("endpoint")
            yield Input("", placeholder="empty: the model runs here; or an OpenAI-compatible "
                        "URL, e.g. http://127.0.0.1:11434/v1", compact=True,
                        id="generate-endpoint")
        with Horizontal(classes="generate-field", id="generate-numbers"):
            yield Label("count")
            yield Input("20", compact=True, id="generate-count")
            yield Label("max tokens")
            yield Input("512", compact=True, id="generate-max-tokens")
            yield Label("temp")
            yield Input("0", compact=True, id="generate-temp")
            yield Label("split")
            yield Input("80,10,10", compact=True, id="generate-split")
        with Horizontal(id="generate-actions"):
            yield Label("x stops; running it again resumes where it stopped")
            yield Button("Generate (ctrl+r)", compact=True, variant="primary", id="generate-run")
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
        def path(text: str) -> Path:
            p = Path(text).expanduser()
            return p if p.is_absolute() or base is None else base / p

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
        common = dict(kind=kind, out=path(out), model=model, endpoint=endpoint,
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
        target = path(out)
        if target.is_dir() or target.suffix.lower() not in (".jsonl", ".json"):
            split = parse_split(value("split") or "80,10,10")
        return GenerationRequest(prompts=path(value("prompts")), split=split, **common)

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

        try:
            with mlx_streams_released():
                source = open_source(model=request.model, adapter=None,
                                     endpoint=request.endpoint, progress=progress)
                try:
                    if request.kind == "questions":
                        result = generate_questions(
                            source, request.topic, request.count, request.out,
                            max_tokens=request.max_tokens, temp=request.temp,
                            seed=None if request.endpoint else 0, progress=progress,
                            cancel=cancel, on_written=written)
                    else:
                        result = generate_answers(
                            source, request.prompts, request.out,
                            max_tokens=request.max_tokens, temp=request.temp,
                            seed=None if request.endpoint else 0, split=request.split,
                            progress=progress, cancel=cancel, on_written=written)
                finally:
                    source.close()
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
