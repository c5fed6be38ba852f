"""The user's keymap: the ``[keymap]`` table of the settings file, binding id = key.

::

    [keymap]
    show-data = "f1"
    start-run = "ctrl+r,f5"    # several keys, comma-separated

Applied with Textual's own keymap (``App.set_keymap``), so the footer and the palette show the
new key and the binding's old key is free. An entry that cannot apply (an unknown id, a key that
is not one) is one line naming the file, its line and the entry; the others apply all the same.
An entry that takes the key of another binding of the same pane is applied, and said.
"""

from __future__ import annotations

import importlib
import pkgutil
import unicodedata

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.keys import Keys, _character_to_key, _get_unicode_name_from_key

from tunedeck.core.config.tunedeck_toml import _toml_key_line
from tunedeck.core.errors import BadInput
from tunedeck.core.home import settings_file

from .settings import read_settings

MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}
NAMED_KEYS = {key.value.rpartition("+")[2] for key in Keys}
# Where tunedeck's bindings live: the App and every widget and screen of these packages.
BINDING_PACKAGES = ("tunedeck.tui.panes", "tunedeck.tui.widgets")


def key_problem(keys: str) -> str | None:
    """Why ``keys`` (comma-separated, as in a Binding) is not a key Textual knows, else None."""
    for key in (k.strip() for k in keys.split(",")):
        if not key:
            return "an empty key"
        *modifiers, name = key.split("+") if len(key) > 1 else [key]
        unknown = [m for m in modifiers if m not in MODIFIERS]
        if unknown:
            return f"{unknown[0]!r} in {key!r} is not a modifier (use {', '.join(sorted(MODIFIERS))})"
        if len(name) == 1 or name in NAMED_KEYS:
            continue
        try:
            unicodedata.lookup(_get_unicode_name_from_key(name))  # "question_mark", "slash"...
        except KeyError:
            return f"{name!r} is not a key (as in f1, ctrl+r, escape, question_mark)"
    return None


def tunedeck_bindings(app: App) -> list[tuple[type, Binding]]:
    """(class, binding) for every binding of the App and of tunedeck's panes, widgets and dialogs.

    The panes' modules are imported here if the App has not built them yet, so the bindings of
    a pane still to come are known.
    """
    for package_name in BINDING_PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            importlib.import_module(module.name)
    classes, todo = [type(app)], [DOMNode]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith("tunedeck.") and cls not in classes:
                classes.append(cls)
    return [(cls, binding) for cls in classes for binding in cls.__dict__.get("BINDINGS", ())]


def read_keymap() -> tuple[dict[str, str], list[str]]:
    """The settings file's keymap, and a line for each entry skipped (or for the file)."""
    path = settings_file()
    try:
        table = read_settings().get("keymap", {})
    except BadInput as e:
        return {}, [f"{e} (no keymap applied)"]
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not isinstance(table, dict):
        return {}, [f"{path}:{_toml_key_line(text, ('keymap',)) or 1}: keymap is a table, "
                    "as in [keymap] then show-data = \"f1\""]
    keymap, problems = {}, []
    for binding_id, keys in table.items():
        problem = f"{keys!r} is not text" if not isinstance(keys, str) else key_problem(keys)
        if problem:
            line = _toml_key_line(text, ("keymap", binding_id)) or 1
            problems.append(f"{path}:{line}: keymap {binding_id} = {keys!r}: {problem}; skipped")
        else:
            # One character becomes its key's name ("?" is "question_mark"), as Binding does.
            keymap[binding_id] = ",".join(_character_to_key(k) if len(k) == 1 else k
                                          for k in (k.strip() for k in keys.split(",")))
    return keymap, problems


def apply_user_keymap(app: App) -> None:
    """Apply the user's keymap to ``app`` and tell the user of each entry that cannot apply.

    The keys apply at once. Which ids exist, and which binding of the same pane or dialog loses
    its key to an entry, are looked at after the first frame: that imports the panes the App
    builds then.
    """
    keymap, problems = read_keymap()
    for problem in problems:
        app.notify(problem, title="Keymap", severity="error", timeout=30)
    if not keymap:
        return
    app.set_keymap(keymap)

    def check_entries() -> None:
        path = settings_file()
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        bindings = [(cls, b) for cls, b in tunedeck_bindings(app) if isinstance(b, Binding) and b.id]
        for binding_id in sorted(set(keymap) - {b.id for _cls, b in bindings}):
            line = _toml_key_line(text, ("keymap", binding_id)) or 1
            app.notify(f"{path}:{line}: keymap {binding_id}: no binding has this id; skipped",
                       title="Keymap", severity="error", timeout=30)
        # Textual lets the entry have the key and the binding that had it lose it, without a word.
        for cls, taker in bindings:
            if taker.id not in keymap:
                continue
            for key in keymap[taker.id].split(","):
                for other, loser in bindings:
                    if other is cls and loser.id not in keymap and key in loser.key.split(","):
                        line = _toml_key_line(text, ("keymap", taker.id)) or 1
                        app.notify(f"{path}:{line}: keymap {taker.id} = {keymap[taker.id]!r} takes the key of "
                                   f"{loser.id} ({loser.description}), which has no key now",
                                   title="Keymap", severity="warning", timeout=30)

    app.call_after_refresh(check_entries)

