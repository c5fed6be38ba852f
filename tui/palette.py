"""The command palette's list of tunedeck's actions: every binding of the App, of the visible pane
and of the focused widget and its containers, each with its description and its key as the
footer shows it (the user's keymap applied).

An action that does nothing now (its ``check_action`` says so: no run to stop, no checkpoint
chosen) is not offered. Editing and cursor keys of Textual's own widgets (an Input's ctrl+a, a
list's up) are not actions of tunedeck and are left to the footer's widgets.
"""

from __future__ import annotations

from typing import Iterable

from textual import actions
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widgets import TabbedContent


def visible_pane(screen: Screen) -> DOMNode | None:
    """The pane on show in ``screen``'s tabs, once it is built."""
    for tabs in screen.query(TabbedContent):
        pane = tabs.active_pane
        if pane is not None and pane.children:
            return pane.children[0]
    return None


def _offered(app: App, screen: Screen) -> list[tuple[DOMNode, Binding]]:
    """(namespace, binding) for each action a key would run now, the pane's too, keymap applied."""
    found = [(b.node, b.binding) for b in screen.active_bindings.values() if b.enabled]
    pane = visible_pane(screen)
    if pane is not None and all(pane is not node for node, _ in found):
        # The focus is outside the pane (on its tab, say): its keys wait for the focus, the
        # palette need not.
        bindings = pane._bindings.copy()
        bindings.apply_keymap(app._keymap)
        for _key, binding in bindings:
            _namespace, name, params = actions.parse(binding.action)
            if pane.check_action(name, params):
                found.append((pane, binding))
    return [(node, binding) for node, binding in found
            if binding.description and type(node).__module__.startswith("tunedeck.")]


def binding_commands(app: App, screen: Screen, taken: Iterable[SystemCommand]) -> Iterable[SystemCommand]:
    """A command for each offered action, its keys joined ("escape, h"); an action that one of
    ``taken`` (Textual's own commands) already runs is left to it."""
    taken_callbacks = [command.callback for command in taken]
    keys: dict[tuple, list[str]] = {}
    bindings: dict[tuple, tuple[DOMNode, Binding]] = {}
    for node, binding in _offered(app, screen):
        which = (id(node), binding.id or binding.action)
        bindings.setdefault(which, (node, binding))
        display = app.get_key_display(binding)
        if display not in keys.setdefault(which, []):
            keys[which].append(display)
    for which, (node, binding) in bindings.items():
        _namespace, name, _params = actions.parse(binding.action)
        if getattr(node, f"action_{name}", None) in taken_callbacks:
            continue
        where = getattr(node, "PANE_TITLE", None)
        where = f"{where} pane" if where else "tunedeck"
        detail = f"{binding.tooltip or where} · key {', '.join(keys[which])}"

        def run(action=binding.action, node=node) -> None:
            app.call_later(app.run_action, action, node)

        yield SystemCommand(binding.description, detail, run)
