"""The App's screen and its tabs of panes.

The App alone chooses the pane shown (``action_show_pane``: the tab, then the pane's focus).
Textual's tabs also follow the focus into a pane, by a message that climbs from the focused
widget through each of its containers; a pane chosen while that message was on its way was
replaced by the one it came from when it arrived. ``PaneTabs`` lets such a message through only
while the focus it reports is still in its pane.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import TabbedContent, TabPane

from .covered import covered_lines


class PanesScreen(Screen):
    """The App's screen, which its tabs of panes and the key footer fill."""

    render_lines = covered_lines


class PaneTabs(TabbedContent):
    """The App's tabs of panes, covered by their tab row and the pane shown."""

    render_lines = covered_lines

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        # Runs before TabbedContent's handler of the same name, which prevent_default skips.
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors:
            event.stop()
            event.prevent_default()


class PaneTab(TabPane):
    """One pane's place among the tabs, which the pane fills."""

    render_lines = covered_lines
