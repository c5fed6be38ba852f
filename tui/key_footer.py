"""The footer of keys, drawn with the first frame and rebuilt only when its keys change.

Textual's Footer shows nothing until two frames after it is mounted, then rebuilds all its key
widgets on every move of the focus, even from one text field to the next where the keys are the
same. Rebuilding and restyling twenty-odd widgets cost about a tenth of a second per Tab in the
form, and it kept the first frame from showing any key.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


def shown_keys(screen: Screen) -> tuple:
    """What the footer shows for ``screen``: each shown binding, whether enabled, its tooltip."""
    return tuple((binding.key, binding.action, binding.description, enabled, tooltip)
                 for _node, binding, enabled, tooltip in screen.active_bindings.values()
                 if binding.show or binding.action == "command_palette")


class KeyFooter(Footer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.set_reactive(Footer._bindings_ready, True)  # the keys known at mount, at once
        self._shown: tuple = ()

    def compose(self):
        if self.is_attached:
            self._shown = shown_keys(self.screen)
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen and shown_keys(screen) == self._shown:
            return
        super().bindings_changed(screen)
