"""The footer of keys, drawn with the first frame and rebuilt only when its keys change.

Textual's Footer shows nothing until two frames after it is mounted, then rebuilds all its key
widgets on every move of the focus, even from one text field to the next where the keys are the
same. Rebuilding and restyling twenty-odd widgets cost about a tenth of a second per Tab in the
form, and it kept the first frame from showing any key.
"""

from __future__ import annotations

from textual import events
from textual.screen import Screen
from textual.widgets import Footer

from .covered import covered_lines

# Below COMPACT_BELOW columns the keys drop their padding, and below PALETTE_HINT_BELOW the
# "^p palette" hint goes (ctrl+p still opens it): at 80 columns the Checkpoints pane's eight keys
# and Quit fit only so.
COMPACT_BELOW = 120
PALETTE_HINT_BELOW = 100


def shown_keys(screen: Screen) -> tuple:
    """What the footer shows for ``screen``: each shown binding, whether enabled, its tooltip."""
    return tuple((binding.key, binding.action, binding.description, enabled, tooltip)
                 for _node, binding, enabled, tooltip in screen.active_bindings.values()
                 if binding.show or binding.action == "command_palette")


class KeyFooter(Footer):
    # Its keys and its background: docked on the screen, it is drawn with every frame.
    render_lines = covered_lines

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.set_reactive(Footer._bindings_ready, True)  # the keys known at mount, at once
        self._shown: tuple = ()

    def on_resize(self, event: events.Resize) -> None:
        self.compact = event.size.width < COMPACT_BELOW
        self.show_command_palette = event.size.width >= PALETTE_HINT_BELOW

    def compose(self):
        if self.is_attached:
            self._shown = shown_keys(self.screen)
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen and shown_keys(screen) == self._shown:
            return
        super().bindings_changed(screen)
