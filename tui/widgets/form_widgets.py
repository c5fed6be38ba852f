"""What changes in the Hyperparameters form as the user types: a field's editor, its note, the
help line, the estimates, the command preview.

A layout of the screen walks the form's ~200 widgets and repaints every one that moved: that,
not the pane's own work, was most of a keystroke (Textual's ``Static.update`` and an ``Input``
whose text changes length each ask for one). These widgets repaint only themselves, and ask for
a layout only when their size really changes (a problem that wraps onto a second line).
"""

from __future__ import annotations

from typing import Union

from rich.text import Text
from textual.containers import VerticalScroll
from textual.geometry import Size
from textual.reactive import Reactive
from textual.visual import visualize
from textual.widget import Widget
from textual.widgets import Input


class FormScroll(VerticalScroll):
    """The form's scrolling container, whose focus restyles itself alone.

    Textual restyles a widget and all its descendants when it gains or loses the focus, for
    rules that style descendants by it (``Tabs:focus .underline--bar``). No rule styles the
    form's fields by the form's focus (tests/tui/test_hyperparameters_pane.py checks), and
    restyling its ~200 widgets came with the first frame and with the Tab into the first field.
    """

    def watch_has_focus(self, _has_focus: bool) -> None:
        self.app.stylesheet.update_nodes((self,), animate=True)


class FieldEditor(Input):
    """A field's one-line editor.

    An ``Input`` sets its virtual size to its text's width on every change, and Textual's
    ``virtual_size`` asks for a layout when it changes. A one-line editor whose size is fixed by
    CSS only scrolls within that virtual size, which needs a repaint, not a layout.
    """

    virtual_size = Reactive(Size(0, 0), layout=False)

    def update_node_styles(self, animate: bool = True) -> None:
        # Input's __init__ sets classes (compact, valid), and each restyled the editor with the
        # whole stylesheet before it was even mounted; mounting styles it anyway.
        if self.is_attached:
            super().update_node_styles(animate)


class FormText(Widget):
    """A block of text whose width is set by CSS; its height follows its lines.

    ``keep_height``: do not shrink while the width stays, until ``fit_height`` (the command
    preview: a command that wraps and unwraps as digits are typed would move the whole form up
    and down a line per key, and every such move repaints all of it).
    """

    DEFAULT_CSS = """
    FormText {
        height: auto;
        min-height: 1;
    }
    """

    def __init__(self, text: Union[str, Text] = "", *, keep_height: bool = False,
                 id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self._text = Text(text) if isinstance(text, str) else text
        self.keep_height = keep_height
        self._tallest = (0, 0)  # (width, lines): the most lines shown at that width

    @property
    def text(self) -> str:
        return self._text.plain

    def render(self) -> Text:
        return self._text

    def show(self, text: Union[str, Text]) -> None:
        text = Text(text) if isinstance(text, str) else text
        if text == self._text:
            return
        self._text = text
        self.refresh(layout=not self._fits(text))

    def fit_height(self) -> None:
        """Take the height of the text shown again (the user has moved to another field)."""
        width, kept = self._tallest
        self._tallest = (0, 0)
        if kept and visualize(self, self._text).get_height(self.styles, width) < kept:
            self.refresh(layout=True)

    def _fits(self, text: Text) -> bool:
        """Whether ``text`` fills exactly the box this widget has now (no layout needed)."""
        styles = self.styles
        if not self.size or (styles.width is not None and styles.width.is_auto):
            return False  # never laid out, or as wide as its text
        if styles.height is not None and not styles.height.is_auto:
            return True  # its height is set by CSS
        width = self.content_size.width
        lines = self._kept(width, visualize(self, text).get_height(styles, width))
        height = lines + styles.gutter.height
        if styles.max_height is not None and styles.max_height.is_cells:
            height = min(height, int(styles.max_height.value))
        if styles.min_height is not None and styles.min_height.is_cells:
            height = max(height, int(styles.min_height.value))
        return height == self.size.height

    def _kept(self, width: int, lines: int) -> int:
        if not self.keep_height:
            return lines
        kept_width, kept = self._tallest
        if kept_width == width and kept > lines:
            return kept
        self._tallest = (width, lines)
        return lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._kept(width, super().get_content_height(container, viewport, width))
