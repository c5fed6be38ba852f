"""The Hyperparameters pane: every TrainConfig field in its group, checked as it is typed.

The form keeps a ``TrainConfig`` of the last valid value of every field; a field with a problem
shows it in place and keeps the config's previous value until fixed. Below the form: the
iterations↔epochs conversion, a memory estimate, a time estimate from earlier runs of the same
model, and the equivalent ``mlx_lm.lora`` command.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widget import MountError
from textual.widgets import Input, Label, Static

from tunedeck.core.checkpoints import Checkpoint
from tunedeck.core.config import FIELDS, GROUPS, TrainConfig, format_field, validate_field
from tunedeck.core.errors import BadInput
from tunedeck.core.rundir import RunDirectory

from .dialogs import Ask
from .literal import visible
from .messages import StartRequested
from .run_status_line import duration
from .training_estimates import estimate_memory, measured_speed

PROJECT_CONFIG = "tunedeck.toml"


def default_config(project: Optional[Path]) -> TrainConfig:
    """The project's tunedeck.toml, else defaults pointed at the project's data directory."""
    if project is not None and (project / PROJECT_CONFIG).exists():
        return TrainConfig.from_toml(project / PROJECT_CONFIG)
    config = TrainConfig()
    if project is not None and (project / "data").is_dir():
        config.data = "data"
    return config


def size_gb(gb: float) -> str:
    return f"{gb:.1f} GB" if gb >= 1 else f"{gb * 1024:.0f} MB"


class FieldEdited(Message):
    def __init__(self, name: str, text: str):
        super().__init__()
        self.name = name
        self.text = text


class ConfigField(Horizontal):
    """One field: its name, an editor, and a note beside it (a problem, or a conversion).

    Every editor is a text input (cheap to build, the form has over forty): choices are
    completed from the allowed values as they are typed, and checked like any other value.
    """

    def __init__(self, spec, text: str):
        super().__init__(classes="config-field", id=f"field-{spec.name.replace('.', '-')}")
        self.spec = spec
        self.text = text
        self.problem: Optional[str] = None
        self.note = ""

    def compose(self) -> ComposeResult:
        spec = self.spec
        choices = ("true", "false") if spec.kind == "bool" else spec.choices
        suggester = SuggestFromList(choices, case_sensitive=False) if choices else None
        placeholder = " | ".join(choices) if choices else ("optional" if spec.optional else "")
        yield Label(spec.name, classes="field-name")
        yield Input(self.text, placeholder=placeholder, suggester=suggester, compact=True,
                    classes="editor")
        yield Label("", classes="field-note")

    @property
    def editor(self) -> Input:
        return self.query_one(Input)

    def set_text(self, text: str) -> None:
        """Show ``text`` without reporting it as an edit."""
        self.text = text
        with self.editor.prevent(Input.Changed):
            self.editor.value = text

    def show_problem(self, problem: Optional[str]) -> None:
        if problem != self.problem:
            self.problem = problem
            self.set_class(bool(problem), "-invalid")
            self._show()

    def show_note(self, note: str) -> None:
        if note != self.note:
            self.note = note
            self._show()

    def _show(self) -> None:
        self.query_one(".field-note", Label).update(Text(self.problem or self.note))

    @on(Input.Changed)
    def _edited(self, event: Input.Changed) -> None:
        event.stop()
        if event.value != self.text:  # an input reports its first value too: not an edit
            self.text = event.value
            self.post_message(FieldEdited(self.spec.name, self.text))


class TrainRowsCounted(Message):
    def __init__(self, data: str, rows: Optional[int]):
        super().__init__()
        self.data = data
        self.rows = rows


class SpeedMeasured(Message):
    def __init__(self, model: str, speed):
        super().__init__()
        self.model = model
        self.speed = speed


class FormBuilt(Message):
    """Every group of fields is mounted (the App builds the panes out of sight after it)."""


class HyperparametersPane(Vertical):
    PANE_TITLE = "Hyperparameters"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", id="start-run"),
        Binding("ctrl+s", "save", "Save", id="save-config"),
        Binding("ctrl+o", "open", "Open TOML/YAML", id="open-config"),
        Binding("ctrl+y", "copy_command", "Copy command", id="copy-command"),
    ]

    def __init__(self, project: Optional[Path], **kwargs):
        super().__init__(**kwargs)
        self.project = project
        self.problem_on_load: Optional[str] = None
        try:
            self.config = default_config(project)
        except BadInput as exc:
            self.config, self.problem_on_load = TrainConfig(), str(exc)
        self.problems: dict[str, str] = {}
        self.complete = False  # every group of fields is mounted
        self.train_rows: dict[str, Optional[int]] = {}
        self.measured: Optional[SpeedMeasured] = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form"):
            yield self._group(GROUPS[0])
        yield Static("tab moves through the fields, each explained here; ctrl+r starts a run",
                     id="field-help")
        yield Static(id="estimates")
        yield Static(id="command")

    def _group(self, group: str) -> Vertical:
        fields = [ConfigField(spec, format_field(spec.name, self.config.get_field(spec.name)))
                  for spec in FIELDS if spec.group == group]
        return Vertical(Label(group, classes="group-title"), *fields, classes="config-group")

    def on_mount(self) -> None:
        if self.problem_on_load:
            self.notify(self.problem_on_load, title=PROJECT_CONFIG, severity="error", timeout=12)
        self._config_changed()
        # Forty-odd fields take seconds to build on a slow machine: the first group comes with
        # the first frame, the others one per frame after it.
        self.call_after_refresh(self._add_group, 1)

    async def _add_group(self, index: int) -> None:
        try:
            await self.query_one("#form").mount(self._group(GROUPS[index]))
        except MountError:
            return  # the app is closing already
        self._config_changed()
        if index + 1 < len(GROUPS):
            self.call_after_refresh(self._add_group, index + 1)
        else:
            self.complete = True
            self.post_message(FormBuilt())

    def focus_main(self) -> None:
        # The form, not its first field: digits still choose panes, tab goes into the fields.
        self.query_one("#form").focus()

    def on_descendant_focus(self, event) -> None:
        fields = [node for node in event.widget.ancestors_with_self if isinstance(node, ConfigField)]
        if fields:
            spec = fields[0].spec
            self.query_one("#field-help", Static).update(Text(f"{spec.name}: {spec.help}"))

    # -- editing -----------------------------------------------------------------------------
    @on(FieldEdited)
    def _field_edited(self, event: FieldEdited) -> None:
        value, problem = validate_field(event.name, event.text)
        if problem:
            self.problems[event.name] = problem
        else:
            self.problems.pop(event.name, None)
            self.config = self.config.with_field(event.name, value)
            # iters and epochs are two ways to say one thing: setting one clears the other.
            other = {"iters": "epochs", "epochs": "iters"}.get(event.name)
            if other and value is not None and self.config.get_field(other) is not None:
                self.config = self.config.with_field(other, None)
                for field in self.query(f"#field-{other}").results(ConfigField):
                    field.set_text("")
        self._config_changed()

    def load_config(self, config: TrainConfig) -> None:
        self.config, self.problems = config, {}
        for field in self.query(ConfigField):  # groups mounted later start from self.config
            field.set_text(format_field(field.spec.name, config.get_field(field.spec.name)))
        self._config_changed()

    def warm_start_from(self, run: RunDirectory, checkpoint: Checkpoint) -> bool:
        """Fill the form with ``run``'s config, starting from ``checkpoint``'s weights."""
        try:
            config = TrainConfig.from_toml(run.run_toml)
        except BadInput as exc:
            self.notify(str(exc), severity="error")
            return False
        base = config.name or config.run_name
        self.load_config(dataclasses.replace(
            config, name=f"{base}-warm{checkpoint.iteration}", resume_adapter_file=str(checkpoint.path)))
        self.notify(f"a new run starting from checkpoint {checkpoint.iteration}'s weights: "
                    "adjust and start it (ctrl+r)")
        return True

    def _config_changed(self) -> None:
        # Cross-field problems name their field first ("epochs: set either iters or epochs…").
        cross = {}
        for problem in self.config.problems():
            cross.setdefault(problem.split(":", 1)[0], problem)
        for field in self.query(ConfigField):
            name = field.spec.name
            field.show_problem(self.problems.get(name) or cross.get(name))
        self._show_iterations()
        self._show_estimates()
        self._show_command()

    def _resolved(self) -> TrainConfig:
        return self.config.resolve_paths(self.project or Path.cwd())

    def _show_iterations(self) -> None:
        config = self._resolved()
        rows = self.train_rows.get(config.data, -1)
        if rows == -1:
            self.train_rows[config.data] = None
            self._count_train_rows(config)
            return
        iters_note = epochs_note = ""
        if rows:
            per_epoch = rows // config.batch_size
            if config.epochs is not None and per_epoch:
                epochs_note = f"= {config.iters_for_epochs(rows)} iterations"
            elif config.iters and per_epoch:
                iters_note = f"≈ {config.iters / per_epoch:.2f} epochs of {rows} rows"
        for name, note in (("iters", iters_note), ("epochs", epochs_note)):
            for field in self.query(f"#field-{name}").results(ConfigField):
                field.show_note(note)

    def _total_iters(self) -> Optional[int]:
        config = self._resolved()
        if config.epochs is None:
            return config.iters
        rows = self.train_rows.get(config.data)
        return config.iters_for_epochs(rows) if rows else None

    def _show_estimates(self) -> None:
        config = self._resolved()
        parts = []
        memory = estimate_memory(config)
        if memory is not None:
            parts.append(f"memory ≈ {size_gb(memory.total_gb)} (weights {size_gb(memory.weights_gb)}, "
                         f"training {size_gb(memory.trainable_gb + memory.activations_gb)} "
                         "at max_seq_length)")
        total = self._total_iters()
        measured = self.measured
        if measured is not None and measured.model == config.model and measured.speed and total:
            speed = measured.speed
            parts.append(f"time ≈ {duration(total * speed.seconds_per_iter)} "
                         f"(measured in {speed.run_name})")
        elif measured is None or measured.model != config.model:
            self._measure_speed(config.model, config.batch_size)
        self.query_one("#estimates", Static).update(Text("  ·  ".join(parts)))

    def _show_command(self) -> None:
        config = self._resolved()
        if config.problems() or self.problems:
            text = "fix the fields marked above to see the mlx_lm.lora command"
        else:
            command = config.to_command()
            text = "$ " + command.text
            if command.config_file:
                text += f"\n  (it reads {command.config_file}: save the config under that name with ctrl+s)"
        self.query_one("#command", Static).update(Text("\n".join(visible(line) for line in text.split("\n"))))

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-rows")
    def _count_train_rows(self, config: TrainConfig) -> None:
        try:
            rows = config.count_train_rows()
        except BadInput:
            rows = None
        self.post_message(TrainRowsCounted(config.data, rows))

    @on(TrainRowsCounted)
    def _train_rows_counted(self, message: TrainRowsCounted) -> None:
        self.train_rows[message.data] = message.rows
        self._show_iterations()
        self._show_estimates()

    @work(thread=True, exclusive=True, exit_on_error=False, group="speed")
    def _measure_speed(self, model: str, batch_size: int) -> None:
        root = self.project / "runs" if self.project else None
        self.post_message(SpeedMeasured(model, measured_speed(root, model, batch_size)))

    @on(SpeedMeasured)
    def _speed_measured(self, message: SpeedMeasured) -> None:
        self.measured = message
        self._show_estimates()

    # -- actions -------------------------------------------------------------------------------
    def _ready(self) -> Optional[TrainConfig]:
        """The resolved config when every field is valid; otherwise the first problem is shown."""
        config = self._resolved()
        problems = list(self.problems.values()) + config.problems()
        if problems:
            self.notify(problems[0], title="fix this first", severity="error")
            return None
        return config

    def action_start(self) -> None:
        config = self._ready()
        if config is not None:
            self.post_message(StartRequested(config))

    def action_copy_command(self) -> None:
        config = self._ready()
        if config is not None:
            self.app.copy_to_clipboard(config.to_command().text)
            self.notify("mlx_lm.lora command copied to the clipboard")

    def action_save(self) -> None:
        if self._ready() is None:
            return
        default = str((self.project or Path.cwd()) / PROJECT_CONFIG)

        def save(path: Optional[str]) -> None:
            if not path:
                return
            target = Path(path).expanduser()
            try:
                if target.suffix in (".yaml", ".yml"):
                    self._resolved().write_mlx_yaml(target)  # for mlx_lm.lora -c, paths absolute
                else:
                    self.config.write_toml(target)
            except (BadInput, OSError) as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"saved {path}")

        self.app.push_screen(Ask("Save the config to (.toml for tunedeck, .yaml for mlx_lm.lora -c):",
                                 default), save)

    def action_open(self) -> None:
        default = str((self.project or Path.cwd()) / PROJECT_CONFIG)

        def load(path: Optional[str]) -> None:
            if not path:
                return
            target = Path(path).expanduser()
            try:
                if target.suffix in (".yaml", ".yml"):
                    config = TrainConfig.from_mlx_yaml(target)
                else:
                    config = TrainConfig.from_toml(target)
            except BadInput as exc:
                self.notify(str(exc), severity="error", timeout=12)
                return
            self.load_config(config)
            self.notify(f"loaded {path}")

        self.app.push_screen(Ask("Open a tunedeck TOML or an mlx-lm YAML:", default), load)
