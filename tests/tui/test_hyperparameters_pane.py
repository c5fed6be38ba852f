"""The Hyperparameters form: values from the project, inline problems, epochs↔iters, the
command, loading and saving configs, and Start."""

from pathlib import Path

from textual.widgets import Input, Label

from tunedeck.core.config import TrainConfig
from tunedeck.tui.dialogs import Ask
from tunedeck.tui.hyperparameters_pane import ConfigField, HyperparametersPane
from tunedeck.tui.messages import StartRequested

from .harness import PaneHarness, wait_until


def field(app, name: str) -> ConfigField:
    return app.query_one(f"#field-{name.replace('.', '-')}", ConfigField)


def problem(app, name: str) -> str:
    shown = field(app, name)
    return str(shown.query_one(".field-note", Label).render()) if shown.has_class("-invalid") else ""


def note(app, name: str) -> str:
    return str(field(app, name).query_one(".field-note", Label).render())


async def opened(pilot, app) -> HyperparametersPane:
    """The pane once all its groups of fields are there (they come one per frame)."""
    pane = app.query_one(HyperparametersPane)
    await wait_until(pilot, lambda: pane.complete, what="the whole form")
    return pane


async def type_into(pilot, app, name: str, text: str) -> None:
    editor = field(app, name).editor
    editor.focus()
    editor.value = ""
    await pilot.press(*text)
    await pilot.pause()


async def test_the_form_shows_the_projects_config_in_groups(project):
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        groups = [str(label.render()) for label in app.query(".group-title")]
        assert groups == ["Model and data", "Method and LoRA", "Schedule",
                          "Evaluation and checkpoints", "Advanced"]
        assert field(app, "iters").editor.value == "40"
        assert field(app, "lora_parameters.rank").editor.value == "8"
        command = str(app.query_one("#command").render())
        assert "mlx_lm.lora" in command and "--iters 40" in command


async def test_a_bad_value_is_named_next_to_its_field_and_blocks_start(project):
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        await type_into(pilot, app, "learning_rate", "-1")
        assert problem(app, "learning_rate").startswith("learning_rate:")
        assert "fix the fields" in str(app.query_one("#command").render())
        await pilot.press("ctrl+r")
        assert not app.of_type(StartRequested)
        await type_into(pilot, app, "learning_rate", "2e-4")
        assert problem(app, "learning_rate") == ""
        assert "--learning-rate 0.0002" in str(app.query_one("#command").render())


async def test_epochs_replace_iters_and_say_how_many_iterations_they_are(project):
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        await wait_until(pilot, lambda: "epochs" in note(app, "iters"), what="the epochs hint")
        assert note(app, "iters") == "≈ 4.00 epochs of 40 rows"  # 40 rows, batch 4: 10 per epoch
        await type_into(pilot, app, "epochs", "2.5")
        assert field(app, "iters").editor.value == ""
        assert note(app, "epochs") == "= 25 iterations"
        assert "--iters 25" in str(app.query_one("#command").render())


async def test_letter_and_digit_keys_type_into_a_field(project):
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        await type_into(pilot, app, "name", "x1r")
        assert field(app, "name").editor.value == "x1r"
        assert not app.received


async def test_start_sends_the_resolved_config_up(project):
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        config = app.of_type(StartRequested)[0].config
        assert Path(config.data) == project / "data"
        assert config.iters == 40


async def test_copy_save_and_load(project, tmp_path):
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        field(app, "iters").editor.focus()
        await pilot.press("ctrl+y")
        assert app.copied and app.copied[0].startswith("mlx_lm.lora")
        await type_into(pilot, app, "iters", "77")
        saved = tmp_path / "saved.toml"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, Ask)
        app.screen.query_one(Input).value = str(saved)
        await pilot.press("enter")
        assert TrainConfig.from_toml(saved).iters == 77

        yaml_file = tmp_path / "lora.yaml"
        yaml_file.write_text("model: some/model\ndata: data\niters: 321\nbatch_size: 2\n"
                             "lora_parameters: {rank: 4, scale: 10.0, dropout: 0.1}\n")
        await pilot.press("ctrl+o")
        app.screen.query_one(Input).value = str(yaml_file)
        await pilot.press("enter")
        await pilot.pause()
        assert field(app, "iters").editor.value == "321"
        assert field(app, "lora_parameters.rank").editor.value == "4"
        assert field(app, "model").editor.value == "some/model"


async def test_a_memory_estimate_is_shown_for_a_local_model(project):
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)):
        assert "memory ≈" in str(app.query_one("#estimates").render())


async def test_a_time_estimate_once_a_run_of_the_same_model_was_measured(finished_project):
    app = PaneHarness(lambda: HyperparametersPane(finished_project))
    async with app.run_test(size=(120, 40)) as pilot:
        estimates = app.query_one("#estimates")
        await wait_until(pilot, lambda: "time ≈" in str(estimates.render()), what="a time estimate")
        assert "measured in tiny-" in str(estimates.render())
