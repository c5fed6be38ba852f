"""The Hyperparameters form: values from the project, inline problems, epochs↔iters, the
command, loading and saving configs, and Start."""

import dataclasses
import threading
from pathlib import Path

import pytest
from textual.widgets import Input, TabbedContent

from tunedeck.core.config import TrainConfig
from tunedeck.tui.widgets.dialogs import Ask, Confirm
from tunedeck.tui.panes.hyperparameters import HyperparametersPane
from tunedeck.tui.panes.hyperparameters.config_field import ConfigField
from tunedeck.tui.messages import StartRequested

from tests.core.test_config_save import changed_lines

from .harness import PaneHarness, wait_until
from .projects import COMMENTED_CONFIG, write_commented_project


def field(app, name: str) -> ConfigField:
    return app.query_one(f"#field-{name.replace('.', '-')}", ConfigField)


def problem(app, name: str) -> str:
    shown = field(app, name)
    return str(shown.query_one(".field-note").render()) if shown.has_class("-invalid") else ""


def note(app, name: str) -> str:
    return str(field(app, name).query_one(".field-note").render())


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
                          "Evaluation and checkpoints", "Advanced", "Several Macs"]
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
        await opened(pilot, app)
        await pilot.press("ctrl+r")
        config = app.of_type(StartRequested)[0].config
        assert Path(config.data) == project / "data"
        assert config.iters == 40


async def test_copy_save_and_load(project, tmp_path, tiny_model):
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
        # The whole file: the project's values as typed (data stays "data"), iters changed,
        # nothing resolved or run-specific added.
        project_config = TrainConfig.from_toml(project / "tunedeck.toml")
        assert TrainConfig.from_toml(saved) == dataclasses.replace(project_config, iters=77)
        assert 'data = "data"' in saved.read_text() and "adapter_path" not in saved.read_text()

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


async def save_as_offered(pilot, app) -> None:
    await pilot.press("ctrl+s")
    assert isinstance(app.screen, Ask), ([n.message for n in app._notifications], app.focused)
    await pilot.press("enter")  # the offered path: the file the form came from
    await pilot.pause()


async def test_saving_one_change_changes_one_line_of_the_users_file(tmp_path, tiny_model):
    project = write_commented_project(tmp_path / "p", tiny_model)
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        await type_into(pilot, app, "iters", "35")
        await save_as_offered(pilot, app)
        assert not isinstance(app.screen, Confirm)  # its own file, unchanged on disk: no question
        assert changed_lines(COMMENTED_CONFIG, (project / "tunedeck.toml").read_text()) == [
            "-iters = 20", "+iters = 35"]
        # Saving again without changes leaves the file as it is.
        await save_as_offered(pilot, app)
        assert changed_lines(COMMENTED_CONFIG, (project / "tunedeck.toml").read_text()) == [
            "-iters = 20", "+iters = 35"]


async def test_starting_a_run_leaves_the_forms_config_as_typed(tmp_path, tiny_model):
    """The issue's report: after a run, ctrl+s wrote absolute paths and the run's adapter_path."""
    from tunedeck.core.runs import start_run

    project = write_commented_project(tmp_path / "p", tiny_model)
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await opened(pilot, app)
        await pilot.press("ctrl+r")
        config = app.of_type(StartRequested)[0].config
        assert config.model == str(project / "models" / "tiny")  # the run gets resolved paths
        # Started from a thread, as the App's worker does, while the form stays open.
        started = []
        worker = threading.Thread(target=lambda: started.append(
            start_run(config, root=project / "runs")))
        worker.start()
        await wait_until(pilot, lambda: not worker.is_alive(), timeout=120, what="the run to start")
        run, process = started[0]
        assert config.model == str(project / "models" / "tiny")  # start_run changed nothing
        assert config.adapter_path == str(project / "adapters")
        assert pane.config == TrainConfig.from_toml_text(COMMENTED_CONFIG)
        await save_as_offered(pilot, app)
        assert (project / "tunedeck.toml").read_text() == COMMENTED_CONFIG
        process.wait(timeout=300)
        assert "adapter_path" not in (project / "tunedeck.toml").read_text()
        assert TrainConfig.from_toml(run.run_toml).adapter_path == str(run.adapters)


async def test_a_file_changed_on_disk_is_saved_over_only_when_the_user_agrees(tmp_path, tiny_model):
    project = write_commented_project(tmp_path / "p", tiny_model)
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        await type_into(pilot, app, "iters", "35")
        edited = COMMENTED_CONFIG.replace("save_every = 10", "save_every = 5  # from my editor")
        (project / "tunedeck.toml").write_text(edited)
        await save_as_offered(pilot, app)
        assert isinstance(app.screen, Confirm) and "changed on disk" in app.screen.question
        await pilot.press("escape")
        await pilot.pause()
        assert (project / "tunedeck.toml").read_text() == edited
        await save_as_offered(pilot, app)
        assert isinstance(app.screen, Confirm)
        await pilot.click("#confirm")
        await pilot.pause()
        # The form's values, in the file as it is now: the editor's comment stays.
        assert changed_lines(edited, (project / "tunedeck.toml").read_text()) == [
            "-iters = 20", "+iters = 35",
            "-save_every = 5  # from my editor", "+save_every = 10  # from my editor"]


async def test_a_toml_that_does_not_parse_is_not_replaced_by_defaults(tmp_path, tiny_model):
    project = write_commented_project(tmp_path / "p", tiny_model)
    broken = COMMENTED_CONFIG.replace("iters = 20", "iters = = 20")
    (project / "tunedeck.toml").write_text(broken)
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        assert "invalid TOML" in str(app.query_one("#field-help").render())
        assert field(app, "model").editor.value == "" and field(app, "iters").editor.is_disabled
        await pilot.press("ctrl+s")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not isinstance(app.screen, Ask) and not app.of_type(StartRequested)
        refusals = [n.message for n in app._notifications if n.title == "nothing loaded"]
        assert len(refusals) == 2 and "invalid TOML" in refusals[0]  # the keys came, and said why
        assert (project / "tunedeck.toml").read_text() == broken
        # Fixed in an editor and opened again: the form fills and saves as usual.
        (project / "tunedeck.toml").write_text(COMMENTED_CONFIG)
        await pilot.press("ctrl+o")
        await pilot.press("enter")
        await pilot.pause()
        assert field(app, "iters").editor.value == "20" and not field(app, "iters").editor.is_disabled
        await type_into(pilot, app, "iters", "21")
        await save_as_offered(pilot, app)
        assert changed_lines(COMMENTED_CONFIG, (project / "tunedeck.toml").read_text()) == [
            "-iters = 20", "+iters = 21"]


async def test_the_copied_command_names_the_models_directory_and_runs_as_it_is(tmp_path, tiny_model):
    project = write_commented_project(tmp_path / "p", tiny_model)
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        command = app.query_one("#command")
        await wait_until(pilot, lambda: str(tiny_model) in str(command.render()), what="the command")
        await pilot.press("ctrl+y")
        assert f"--model {tiny_model}" in app.copied[0]
        assert f"--data {project / 'data'}" in app.copied[0]
        assert field(app, "model").editor.value == "models/tiny"  # the form keeps it as typed


async def test_epochs_use_the_rows_counted_once_not_a_read_per_keystroke(project):
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        await type_into(pilot, app, "epochs", "2")
        assert "--iters 20" in str(app.query_one("#command").render())  # 40 rows, batch 4
        # More rows on disk now: the form goes on with the count it made (a read of a big
        # train.jsonl per keystroke is what froze it); the run counts again when it starts.
        train = project / "data" / "train.jsonl"
        train.write_text(train.read_text() * 2)
        await type_into(pilot, app, "epochs", "3")
        assert "--iters 30" in str(app.query_one("#command").render())
        assert note(app, "epochs") == "= 30 iterations"


async def batch_size_under_epochs(pilot, app) -> Input:
    """The batch_size editor, focused, once the form knows the 40 rows one epoch goes through
    (each key in it changes the iterations: the epochs note and the command)."""
    await opened(pilot, app)
    await wait_until(pilot, lambda: note(app, "epochs") == "= 40 iterations", what="the rows")
    editor = field(app, "batch_size").editor
    editor.focus()
    return editor


def one_epoch_project(tmp_path, tiny_model) -> Path:
    from .projects import write_project

    return write_project(tmp_path / "p", tiny_model, iters=None, epochs=1, batch_size=1)


async def test_a_keystroke_repaints_what_it_changes_without_laying_out_the_form(
        tmp_path, tiny_model, layouts):
    """A layout walks the form's ~200 widgets: it was most of a keystroke's time."""
    project = one_epoch_project(tmp_path, tiny_model)
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await batch_size_under_epochs(pilot, app)
        await pilot.press("end", "2", "backspace")  # the command may take its second line once
        await pilot.pause()
        layouts.clear()
        for key, batch in [("2", 12), ("backspace", 1)] * 3:
            await pilot.press(key)
            await pilot.pause()
            iterations = 40 // batch  # 40 rows, one epoch
            assert note(app, "epochs") == f"= {iterations} iterations"
            assert f"--iters {iterations}" in str(app.query_one("#command").render())
            assert editor.value == str(batch)
        assert layouts == []


async def test_a_keystroke_changes_the_note_and_the_command_before_the_next_frame(tmp_path, tiny_model):
    """The frame that draws a key in a field draws what it changes too.

    The edit went to the form as a message, four hops after the key: the next frame drew the
    editor alone, and the note and the command waited for another frame of the whole form."""
    project = one_epoch_project(tmp_path, tiny_model)
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await batch_size_under_epochs(pilot, app)
        editor.action_end()
        editor.insert_text_at_cursor("2")  # what the key "2" does, no message handled after it
        assert note(app, "epochs") == "= 3 iterations"  # 40 rows, batch 12
        assert "--iters 3 " in str(app.query_one("#command").render())
        editor.action_delete_left()  # backspace
        assert note(app, "epochs") == "= 40 iterations"
        assert "--iters 40 " in str(app.query_one("#command").render())
        await pilot.pause()
        assert app.query_one(HyperparametersPane).config.batch_size == 1


def restyled(app, monkeypatch) -> list:
    """The nodes the app's stylesheet styles from now on, each with whether it was mounted."""
    styled: list = []
    apply = app.stylesheet.apply

    def recorded(node, *args, **kwargs):
        styled.append((node, node.is_attached))
        return apply(node, *args, **kwargs)

    monkeypatch.setattr(app.stylesheet, "apply", recorded)
    return styled


async def test_the_forms_focus_restyles_the_form_alone(project, monkeypatch):
    """Textual restyles a widget and everything in it when its focus changes: for the form,
    ~200 widgets, with the first frame and again with the Tab into the first field."""
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await opened(pilot, app)
        form = pane.query_one("#form")
        styled = restyled(app, monkeypatch)
        pane.focus_main()
        await wait_until(pilot, lambda: form.has_focus, what="the form's focus")
        field(app, "model").editor.focus()
        await wait_until(pilot, lambda: not form.has_focus, what="the first field's focus")
        assert form in [node for node, _ in styled]
        assert [node for node, _ in styled if isinstance(node, ConfigField)] == []
        # Which is right only while no rule styles what is in the form by the form's focus.
        for rule in app.stylesheet.rules:
            for selector_set in rule.selector_set:
                *outer, _last = selector_set.selectors
                for selector in outer:
                    if selector.pseudo_classes & {"focus", "blur", "focus-within"}:
                        assert not selector._check(form), selector_set.css


async def test_a_field_is_styled_once_it_is_mounted_not_before(project, monkeypatch):
    """Input's __init__ sets its classes (compact, valid), and each restyled the editor with the
    whole stylesheet before it was mounted: two needless stylings of 47 editors."""
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(160, 48)) as pilot:
        styled = restyled(app, monkeypatch)
        await opened(pilot, app)
        editors = [node for node, _ in styled if isinstance(node, Input)]
        assert editors, "no group of fields was mounted after the first"
        assert [node for node, mounted in styled if isinstance(node, Input) and not mounted] == []


@pytest.mark.demo
async def test_the_demo_project_under_git_keeps_its_file_through_a_save_and_a_run(tmp_path, demo_model):
    """The issue's walk-through on the real demo project, in the whole app."""
    import subprocess

    from tunedeck.core.demo_project import create_demo_project
    from tunedeck.core.rundir import RunDirectory
    from tunedeck.core.runs import stop_run
    from tunedeck.tui.app import TunedeckApp

    project = create_demo_project(tmp_path / "demo")
    git = lambda *args: subprocess.run(["git", "-C", str(project), *args], check=True,
                                       capture_output=True, text=True).stdout
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "demo", "--allow-empty")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "demo project")
    original = (project / "tunedeck.toml").read_text()

    app = TunedeckApp(project=project)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await wait_until(pilot, lambda: app.query_one(HyperparametersPane), what="the form")
        await wait_until(pilot, lambda: pane.complete, what="the whole form")
        iters = TrainConfig.from_toml_text(original).iters
        await type_into(pilot, app, "iters", str(iters + 5))
        await save_as_offered(pilot, app)
        diff = [line for line in git("diff", "-U0").splitlines()
                if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        assert diff == [f"-iters = {iters}", f"+iters = {iters + 5}"]
        saved = (project / "tunedeck.toml").read_text()

        await pilot.press("ctrl+r")
        # The app has followed the run and shown it (its last step: said where it trains).
        await wait_until(pilot, lambda: app.query_one(TabbedContent).active == "training" and any(
            n.message.startswith("training in") for n in app._notifications),
                         timeout=120, what="the run to start")
        runs = [p for p in (project / "runs").iterdir() if p.is_dir()]
        try:
            app.action_show_pane("hyperparameters")
            # The form itself, where showing the pane puts the focus: the field typed into before
            # the run is in the pane too, and keeps the focus a moment longer.
            await wait_until(pilot, lambda: app.focused is pane.query_one("#form"), what="the form's focus")
            await save_as_offered(pilot, app)
            assert not isinstance(app.screen, Confirm)
            assert (project / "tunedeck.toml").read_text() == saved
            assert pane.config == TrainConfig.from_toml_text(saved)  # model still "demo"
            run_config = TrainConfig.from_toml(RunDirectory(runs[0]).run_toml)
            assert run_config.model == str(demo_model) and run_config.adapter_path.startswith(str(runs[0]))
        finally:
            for run in runs:
                if RunDirectory(run).state() in ("starting", "running"):
                    stop_run(RunDirectory(run))
        # Quit once the app has shown the end: an update arriving while it quits is a known
        # fault of the app (tui/app.py _run_updated, reported).
        await wait_until(pilot, lambda: "stopped" in str(app.query_one("#state").render()),
                         timeout=60, what="the stopped run on screen")
    assert original != saved


async def test_a_new_project_starts_with_a_model_on_this_machine(tmp_path, tiny_model, monkeypatch):
    project = tmp_path / "new"
    (project / "data").mkdir(parents=True)
    hub = tmp_path / "hub"
    snapshot = hub / "models--org--tiny" / "snapshots" / "abc"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(tiny_model, target_is_directory=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        # Not mlx-lm's default Hub id (Qwen/Qwen3-0.6b), which cannot be fetched offline.
        assert field(app, "model").editor.value == str(snapshot)
        assert field(app, "data").editor.value == "data"
        await wait_until(pilot, lambda: "memory ≈" in str(app.query_one("#estimates").render()),
                         what="the estimate of a model that is there")


async def test_ctrl_g_shows_the_ranks_of_the_form_as_typed_and_its_hostfile_becomes_hosts(project,
                                                                                          monkeypatch):
    from textual.widgets import Static

    from tunedeck.tui.panes.hyperparameters import hosts_dialog

    app = PaneHarness(lambda: HyperparametersPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app)
        await type_into(pilot, app, "ranks", "2")
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: isinstance(app.screen, hosts_dialog.HostsDialog),
                         what="the Hosts helper")
        layout = str(app.screen.query_one("#layout", Static).render())
        assert layout.splitlines()[0] == "2 ranks, backend ring"  # the form's ranks, unsaved
        (project / "hosts.json").write_text('[{"ssh": "localhost", "ips": ["127.0.0.1"]}]')
        app.screen.dismiss(str(project / "hosts.json"))  # as after ctrl+t wrote it
        await wait_until(pilot, lambda: field(app, "hosts").editor.value == str(project / "hosts.json"),
                         what="the hostfile in the form")
        assert "hosts" in app.query_one(HyperparametersPane).config.to_toml()
