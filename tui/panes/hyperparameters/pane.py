"""The Hyperparameters pane: every TrainConfig field in its group, checked as it is typed.

The form keeps a ``TrainConfig`` of the last valid value of every field, with paths as the user
typed them: that is what ctrl+s saves, editing the file in place. Resolved paths exist only in
copies, for a run, an estimate or the command. A field with a problem shows it in place and keeps
the config's previous value until fixed. Below the form: the iterations↔epochs conversion, a
memory estimate, a time estimate from earlier runs of the same model, and the equivalent
``mlx_lm.lora`` command. Nothing here reads a file on a keystroke: row counts and model shapes
come from workers, once per data directory and model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import MountError
from textual.widgets import Label

from tunedeck.core.checkpoints import Checkpoint
from tunedeck.core.config import (FIELDS, GROUPS, PROJECT_CONFIG, FileChanged, TrainConfig, format_field,
                                  load_project_config, validate_field)
from tunedeck.core.errors import BadInput
from tunedeck.core.eta import format_duration
from tunedeck.core.rundir import RunDirectory

from tunedeck.core.text import visible
from tunedeck.core.training_estimates import estimate_memory, measured_speed, read_model_shape

from ...messages import FormBuilt, StartRequested
from ...widgets.dialogs import Ask, Confirm
from ...widgets.covered import covered_lines
from ...widgets.form_widgets import FormScroll, FormText
from .config_field import ConfigField, FieldGroup
from .messages import ModelInspected, SpeedMeasured, TrainRowsCounted

FIELDS_HELP = "tab moves through the fields, each explained here; ctrl+r starts a run"


def size_gb(gb: float) -> str:
    return f"{gb:.1f} GB" if gb >= 1 else f"{gb * 1024:.0f} MB"


class HyperparametersPane(Vertical):
    PANE_TITLE = "Hyperparameters"
    DEFAULT_CSS = """
    HyperparametersPane #form { height: 1fr; scrollbar-size-vertical: 1; }
    /* A group is as tall as its fields: the form scrolls (1fr groups shared its height, each
       showing its first fields only). */
    HyperparametersPane .config-group { height: auto; }
    HyperparametersPane .group-title {
        width: 1fr; background: $panel; color: $foreground; text-style: bold; padding: 0 1; margin-top: 1;
    }
    HyperparametersPane #field-help, HyperparametersPane #estimates, HyperparametersPane #command {
        height: auto; max-height: 3; padding: 0 1; background: $surface;
    }
    HyperparametersPane #command { color: $accent; }
    """
    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", id="start-run"),
        Binding("ctrl+s", "save", "Save", id="save-config"),
        Binding("ctrl+o", "open", "Open TOML/YAML", id="open-config"),
        Binding("ctrl+y", "copy_command", "Copy command", id="copy-command"),
        Binding("ctrl+g", "hosts_helper", "Hosts", id="hosts-helper"),
    ]

    def __init__(self, project: Optional[Path], **kwargs):
        super().__init__(**kwargs)
        self.project = project
        # The file the form came from and its text then: a save edits that text in place, and
        # a file that has changed since is not saved over without asking.
        self.source: Optional[Path] = project / PROJECT_CONFIG if project is not None else None
        self.loaded_text: Optional[str] = None
        # The project's config did not load: the form stays empty and saves nothing until the
        # file is fixed and opened again, so a broken file is never replaced by defaults.
        self.blocked: Optional[str] = None
        try:
            self.config, self.loaded_text = load_project_config(project)
        except BadInput as exc:
            self.config, self.blocked = TrainConfig(), str(exc)
        self.problems: dict[str, str] = {}
        self.complete = False  # every group of fields is mounted
        self.train_rows: dict[str, Optional[int]] = {}  # data dir -> rows (None: counting)
        self.rows_problem: dict[str, str] = {}
        self.models: dict[str, ModelInspected] = {}  # model as typed -> where it is, its shape
        self.measured: Optional[SpeedMeasured] = None
        # The fields by name, as their groups are built: a query walks all ~200 widgets of the
        # form, several times per keystroke.
        self.fields: dict[str, ConfigField] = {}

    def render_lines(self, crop: Region) -> list[Strip]:
        return covered_lines(self, crop)  # the form and the three lines below it

    def compose(self) -> ComposeResult:
        with FormScroll(id="form"):
            yield self._group(GROUPS[0])
        yield FormText(self._blocked_text() if self.blocked else FIELDS_HELP, id="field-help")
        yield FormText(id="estimates")
        yield FormText(id="command", keep_height=True)

    def _group(self, group: str) -> FieldGroup:
        # Locked fields one by one, not the whole form: the form keeps the focus, so ctrl+o
        # still reaches the pane.
        fields = [ConfigField(spec, "" if self.blocked else
                              format_field(spec.name, self.config.get_field(spec.name)),
                              self._field_edited, locked=self.blocked is not None)
                  for spec in FIELDS if spec.group == group]
        self.fields.update((field.spec.name, field) for field in fields)
        return FieldGroup(Label(group, classes="group-title"), *fields, classes="config-group")

    def _blocked_text(self) -> str:
        return (f"{self.blocked}\nThe form stays empty so that nothing replaces the file: fix it, "
                "then open it again with ctrl+o.")

    def on_mount(self) -> None:
        if self.blocked:
            self.notify(self.blocked, title=PROJECT_CONFIG, severity="error", timeout=12)
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
            self.query_one("#field-help", FormText).show(f"{spec.name}: {spec.help}")
            self.query_one("#command", FormText).fit_height()

    # -- editing -----------------------------------------------------------------------------
    def _field_edited(self, name: str, text: str) -> None:
        value, problem = validate_field(name, text)
        if problem:
            self.problems[name] = problem
        else:
            self.problems.pop(name, None)
            self.config = self.config.with_field(name, value)
            # iters and epochs are two ways to say one thing: setting one clears the other.
            other = {"iters": "epochs", "epochs": "iters"}.get(name)
            if other and value is not None and self.config.get_field(other) is not None:
                self.config = self.config.with_field(other, None)
                if other in self.fields:
                    self.fields[other].set_text("")
        self._config_changed()

    def load_config(self, config: TrainConfig, source: Optional[Path] = None,
                    text: Optional[str] = None) -> None:
        """Show ``config``; ``source`` and ``text``: the TOML it was read from, which a save
        then edits in place (None: a save writes a new file, or asks before replacing one)."""
        self.config, self.problems = config, {}
        self.source, self.loaded_text = source, text
        if self.blocked:
            self.blocked = None
            for field in self.fields.values():
                field.locked = False
                field.editor.disabled = False
            self.query_one("#field-help", FormText).show(FIELDS_HELP)
        for field in self.fields.values():  # groups mounted later start from self.config
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
        if self.blocked:
            self.query_one("#command", FormText).show("")
            return
        # Cross-field problems name their field first ("epochs: set either iters or epochs…").
        cross: dict[str, str] = {}
        for problem in self.config.problems():
            cross.setdefault(problem.split(":", 1)[0], problem)
        for name, field in self.fields.items():
            field.show_problem(self.problems.get(name) or cross.get(name))
        config = self._resolved()
        self._inspect(config)
        self._show_iterations(config)
        self._show_estimates(config)
        self._show_command(config)

    def _resolved(self) -> TrainConfig:
        """A copy with the project's paths made absolute; ``self.config`` keeps them as typed."""
        return self.config.resolve_paths(self.project or Path.cwd())

    def _inspect(self, config: TrainConfig) -> None:
        """Start the workers for what is not known yet about the data and the model."""
        if config.data not in self.train_rows:
            self.train_rows[config.data] = None
            self._count_train_rows(config)
        if config.model not in self.models:
            self.models[config.model] = ModelInspected(config.model, None, None)
            self._inspect_model(config.model)

    def _show_iterations(self, config: TrainConfig) -> None:
        rows = self.train_rows.get(config.data)
        iters_note = epochs_note = ""
        if rows:
            per_epoch = rows // config.batch_size
            if config.epochs is not None and per_epoch:
                epochs_note = f"= {config.iters_for_epochs(rows)} iterations"
            elif config.iters and per_epoch:
                iters_note = f"≈ {config.iters / per_epoch:.2f} epochs of {rows} rows"
        for name, note in (("iters", iters_note), ("epochs", epochs_note)):
            if name in self.fields:
                self.fields[name].show_note(note)

    def _total_iters(self, config: TrainConfig) -> Optional[int]:
        """iters, or what epochs amount to over the counted rows (None: not counted yet)."""
        if config.epochs is None:
            return config.iters
        rows = self.train_rows.get(config.data)
        if not rows or rows // config.batch_size == 0:
            return None
        return config.iters_for_epochs(rows)

    def _model_location(self, config: TrainConfig) -> Optional[Path]:
        inspected = self.models.get(config.model)
        return inspected.location if inspected else None

    def _show_estimates(self, config: TrainConfig) -> None:
        parts = []
        inspected = self.models.get(config.model)
        memory = estimate_memory(config, inspected.shape if inspected else None)
        if memory is not None:
            parts.append(f"memory ≈ {size_gb(memory.total_gb)} (weights {size_gb(memory.weights_gb)}, "
                         f"training {size_gb(memory.trainable_gb + memory.activations_gb)} "
                         "at max_seq_length)")
        total = self._total_iters(config)
        location = self._model_location(config)
        # Runs record the model's directory, so that is what a measured speed is matched on.
        model = str(location) if location is not None else config.model
        measured = self.measured
        if measured is not None and measured.model == model and measured.speed and total:
            speed = measured.speed
            parts.append(f"time ≈ {format_duration(total * speed.seconds_per_iter)} "
                         f"(measured in {speed.run_name})")
        elif measured is None or measured.model != model:
            self._measure_speed(model, config.batch_size)
        self.query_one("#estimates", FormText).show("  ·  ".join(parts))

    def _command(self, config: TrainConfig):
        """The mlx_lm.lora command that runs as it is, or why there is none yet.

        It names the model's directory (mlx_lm.lora cannot load "demo"), from the worker that
        found it; the form keeps the model as typed."""
        if config.problems() or self.problems:
            return None, "fix the fields marked above to see the mlx_lm.lora command"
        total = self._total_iters(config)
        if total is None:
            problem = self.rows_problem.get(config.data)
            return None, problem or "counting the rows of train.jsonl for epochs…"
        location = self._model_location(config)
        if location is not None:
            config = dataclasses.replace(config, model=str(location))
        return config.to_command(total_iters=total), None

    def _show_command(self, config: TrainConfig) -> None:
        command, why = self._command(config)
        if command is None:
            text = why
        else:
            text = "$ " + command.text
            if command.config_file:
                text += f"\n  (it reads {command.config_file}: save the config under that name with ctrl+s)"
        self.query_one("#command", FormText).show("\n".join(visible(line) for line in text.split("\n")))

    @work(thread=True, exit_on_error=False, group="train-rows")
    def _count_train_rows(self, config: TrainConfig) -> None:
        try:
            rows, problem = config.count_train_rows(), None
        except BadInput as exc:
            rows, problem = None, str(exc)
        self.post_message(TrainRowsCounted(config.data, rows, problem))

    @on(TrainRowsCounted)
    def _train_rows_counted(self, message: TrainRowsCounted) -> None:
        self.train_rows[message.data] = message.rows
        if message.problem:
            self.rows_problem[message.data] = message.problem
        self._refresh_derived()

    @work(thread=True, exit_on_error=False, group="model")
    def _inspect_model(self, model: str) -> None:
        from tunedeck.core.models import model_location

        location = model_location(model)
        self.post_message(ModelInspected(model, location, read_model_shape(location)))

    @on(ModelInspected)
    def _model_inspected(self, message: ModelInspected) -> None:
        self.models[message.model] = message
        self._refresh_derived()

    def _refresh_derived(self) -> None:
        if self.blocked:
            return
        config = self._resolved()
        self._show_iterations(config)
        self._show_estimates(config)
        self._show_command(config)

    @work(thread=True, exclusive=True, exit_on_error=False, group="speed")
    def _measure_speed(self, model: str, batch_size: int) -> None:
        root = self.project / "runs" if self.project else None
        self.post_message(SpeedMeasured(model, measured_speed(root, model, batch_size)))

    @on(SpeedMeasured)
    def _speed_measured(self, message: SpeedMeasured) -> None:
        self.measured = message
        self._show_estimates(self._resolved())

    # -- actions -------------------------------------------------------------------------------
    def _ready(self) -> Optional[TrainConfig]:
        """The resolved config when every field is valid; otherwise the first problem is shown."""
        if self.blocked:
            self.notify(self._blocked_text(), title="nothing loaded", severity="error", timeout=12)
            return None
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

    def action_hosts_helper(self) -> None:
        """The ranks the form's config trains on and its hostfile; a Thunderbolt hostfile the
        dialog writes becomes the form's ``hosts``."""
        from .hosts_dialog import HostsDialog

        def chosen(path: Optional[str]) -> None:
            if path:
                self.fields["hosts"].editor.value = path  # an edit like any other: dirty, saved

        self.app.push_screen(HostsDialog(self._resolved(), (self.project or Path.cwd()) / "hosts.json"),
                             chosen)

    def action_copy_command(self) -> None:
        config = self._ready()
        if config is None:
            return
        command, why = self._command(config)
        if command is None:
            self.notify(why, severity="warning")
            return
        self.app.copy_to_clipboard(command.text)
        if config.model == "demo" and self._model_location(config) is None:
            self.notify("copied; the demo model is built when the first run starts, and the "
                        "command names 'demo' until then", severity="warning")
        elif command.config_file:
            self.notify(f"mlx_lm.lora command copied; it reads {command.config_file}: save the "
                        "config under that name with ctrl+s")
        else:
            self.notify("mlx_lm.lora command copied to the clipboard")

    def action_save(self) -> None:
        if self._ready() is None:
            return
        default = str(self.source or (self.project or Path.cwd()) / PROJECT_CONFIG)
        self.app.push_screen(Ask("Save the config to (.toml for tunedeck, .yaml for mlx_lm.lora -c):",
                                 default), self._save_to)

    def _save_to(self, path: Optional[str], overwrite: bool = False) -> None:
        if not path:
            return
        target = Path(path).expanduser().absolute()
        try:
            if target.suffix in (".yaml", ".yml"):
                if target.exists() and not overwrite:
                    raise FileChanged(target, never_loaded=True)
                self._yaml_config().write_mlx_yaml(target)
            else:
                same = self.source is not None and target == self.source.absolute()
                text = self.config.write_toml(target, loaded_text=self.loaded_text if same else None,
                                              overwrite=overwrite)
                self.source, self.loaded_text = target, text
        except FileChanged as exc:
            question = (f"{target} already exists. Save over it?" if exc.never_loaded else
                        f"{target} changed on disk since it was loaded. Save the form's values "
                        "over it?")
            self.app.push_screen(Confirm(question, "Save over it"),
                                 lambda yes: self._save_to(path, overwrite=True) if yes else None)
            return
        except (BadInput, OSError) as exc:
            self.notify(str(exc), severity="error", timeout=12)
            return
        self.notify(f"saved {path}")

    def _yaml_config(self) -> TrainConfig:
        """For mlx_lm.lora -c: paths absolute and the model's directory, as a run would have."""
        config = self._resolved()
        location = self._model_location(config)
        if location is not None:
            config = dataclasses.replace(config, model=str(location))
        total = self._total_iters(config)
        if config.epochs is not None and total is not None:
            config = dataclasses.replace(config, iters=total, epochs=None)  # rows counted already
        return config

    def action_open(self) -> None:
        default = str(self.source or (self.project or Path.cwd()) / PROJECT_CONFIG)

        def load(path: Optional[str]) -> None:
            if not path:
                return
            target = Path(path).expanduser().absolute()
            text = None
            try:
                if target.suffix in (".yaml", ".yml"):
                    config = TrainConfig.from_mlx_yaml(target)
                else:
                    try:
                        text = target.read_text(encoding="utf-8")
                    except (OSError, UnicodeDecodeError) as exc:
                        raise BadInput(f"{target}: cannot read it: {exc}") from None
                    config = TrainConfig.from_toml_text(text, str(path))
            except BadInput as exc:
                self.notify(str(exc), severity="error", timeout=12)
                return
            # A YAML is mlx-lm's file, written whole: saving the form goes to a TOML instead.
            self.load_config(config, target if text is not None else None, text)
            self.notify(f"loaded {path}")

        self.app.push_screen(Ask("Open a tunedeck TOML or an mlx-lm YAML:", default), load)
