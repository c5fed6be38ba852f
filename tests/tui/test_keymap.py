"""The user's keymap: the settings file's [keymap] applies by binding id; a bad entry is one line
and the rest applies."""

from textual.binding import Binding
from textual.widgets import TabbedContent
from textual.widgets._footer import FooterKey

from tunedeck.core.home import settings_file
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.keymap import key_problem, tunedeck_bindings
from tunedeck.tui.panes.hyperparameters import HyperparametersPane
from tunedeck.tui.widgets.key_footer import KeyFooter

from .harness import wait_until

KEYMAP = """\
theme = "tunedeck-dark"

[keymap]
show-data = "f1"
save-config = "ctrl+b"
no-such-binding = "f2"
toggle-theme = "ctrl+nope"
show-training = "f3,ctrl+underscore"
show-checkpoints = "2"
"""


def footer_keys(app):
    return {key.description: key.key for key in app.query_one(KeyFooter).query(FooterKey)}


async def test_a_keymap_entry_moves_its_binding_and_a_bad_one_is_a_line_of_its_own(project):
    settings_file().parent.mkdir(parents=True, exist_ok=True)
    settings_file().write_text(KEYMAP)
    app = TunedeckApp(project=project)
    async with app.run_test(size=(120, 30)) as pilot:
        pane = await wait_until(pilot, lambda: app.query_one(HyperparametersPane), what="the form")
        await wait_until(pilot, lambda: pane.complete and app.focused is not None, what="the form")
        await wait_until(pilot, lambda: footer_keys(app).get("Save") == "ctrl+b", what="Save on ctrl+b")
        assert footer_keys(app)["Start run"] == "ctrl+r"  # not in the keymap: as it was

        lines = await wait_until(pilot, lambda: [n.message for n in app._notifications
                                                 if n.title == "Keymap"] if len(app._notifications) >= 3
                                 else None, what="the bad entries reported")
        assert sorted(lines) == [
            f"{settings_file()}:6: keymap no-such-binding: no binding has this id; skipped",
            f"{settings_file()}:7: keymap toggle-theme = 'ctrl+nope': 'nope' is not a key "
            "(as in f1, ctrl+r, escape, question_mark); skipped",
            f"{settings_file()}:9: keymap show-checkpoints = '2' takes the key of show-hyperparameters "
            "(Show Hyperparameters), which has no key now",
        ]
        # The palette shows the key the user chose.
        save = [c for c in app.get_system_commands(app.screen) if c.title == "Save"]
        assert [c.help for c in save] == ["Hyperparameters pane · key ^b"]

        await pilot.press("f1")
        assert app.query_one(TabbedContent).active == "data"
        await pilot.press("escape", "f3")  # either of its keys
        assert app.query_one(TabbedContent).active == "training"
        await pilot.press("escape", "1")  # its old key is free now
        assert app.query_one(TabbedContent).active == "training"
        await pilot.press("2")  # the key a keymap entry took from another binding
        assert app.query_one(TabbedContent).active == "checkpoints"
        await pilot.press("ctrl+t")  # the bad entry is skipped: its binding keeps its key
        assert app.theme == "tunedeck-light"


def test_what_is_a_key():
    for key in ("f1", "ctrl+r", "escape", "question_mark", "?", "a", "ctrl+shift+up", "f5,ctrl+b", "["):
        assert key_problem(key) is None, key
    assert key_problem("ctrl+nope") == "'nope' is not a key (as in f1, ctrl+r, escape, question_mark)"
    assert key_problem("cmd+s").startswith("'cmd' in 'cmd+s' is not a modifier")
    assert key_problem("f1,") == "an empty key"


def test_every_binding_has_an_id(project):
    """A binding without an id cannot be moved by the keymap."""
    app = TunedeckApp(project=project)
    bindings = tunedeck_bindings(app)
    ids = {binding.id for _cls, binding in bindings}
    assert {"show-data", "start-run", "stop-run", "resume-checkpoint", "chat-clear", "cancel"} <= ids
    without = [f"{cls.__module__}.{cls.__name__}: {binding}" for cls, binding in bindings
               if not isinstance(binding, Binding) or not binding.id]
    assert without == []


def test_saving_the_theme_keeps_the_keymap_and_its_comments_and_a_damaged_file_is_left_alone():
    from tunedeck.tui.keymap import read_keymap
    from tunedeck.tui.settings import save_setting

    settings_file().parent.mkdir(parents=True, exist_ok=True)
    settings_file().write_text(KEYMAP.replace('show-data = "f1"', 'show-data = "f1"  # my left hand'))
    save_setting("theme", "tunedeck-light")
    text = settings_file().read_text()
    assert 'theme = "tunedeck-light"' in text and 'show-data = "f1"  # my left hand' in text

    damaged = '[keymap]\nshow-data = "f1\n'
    settings_file().write_text(damaged)
    assert read_keymap() == ({}, [f"{settings_file()}:2: invalid TOML: Illegal character '\\n' "
                                  "(no keymap applied)"])
    save_setting("theme", "tunedeck-dark")
    assert settings_file().read_text() == damaged  # what the user wrote by hand is not lost
