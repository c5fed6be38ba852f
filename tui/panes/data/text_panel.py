"""The Data pane's text views: a header and a body of text, drawn as lines."""

from __future__ import annotations

from typing import Optional

from textual.content import Content
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .content import lines


def wrapped(text: Content, width: int) -> list:
    """``text.wrap(width)``, the lines that fit left as they are. Most lines of a row fit, and
    wrapping measures and splits each one again: that was about half the cost of building the
    row a jump shows. A tab is left to ``wrap``, which expands it."""
    out: list = []
    for line in text.split("\n", allow_blank=True):
        if line.cell_length <= width and "\t" not in line.plain:
            out.append(line)
        else:
            out.extend(line.wrap(width))
    return out


class TextPanel(ScrollView, can_focus=True):
    """A header and a body of text, wrapped to the width and drawn line by line.

    A Line API widget rather than a Static in a scrolling container: showing another row
    changes the text's height, and a Static's new height makes the whole screen lay out again
    (hundreds of milliseconds on a busy machine, for every row the cursor passes).
    """

    DEFAULT_CSS = """
    TextPanel {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.header = self.body = Content("")
        self._lines: list = []
        self._wrapped_at = 0
        self._styles: tuple = ()
        self._width: Optional[int] = None  # the text's width, during a drawing

    def show(self, header, body=Content("")) -> None:
        self.header, self.body = header, body
        self._wrapped_at = 0
        self._wrap()
        self.scroll_to(0, 0, animate=False, immediate=True)

    @property
    def shown_text(self) -> str:
        """What the panel says, as plain text (what a reader of the screen gets)."""
        return f"{self.header.plain}\n{self.body.plain}"

    def _wrap(self) -> None:
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._wrapped_at:
            return
        self._wrapped_at = width
        self._lines = wrapped(lines(self.header, self.body), width)
        self._set_height(len(self._lines))
        self.refresh()

    def _set_height(self, height: int) -> None:
        """The text is ``height`` lines tall now: only the scrollbar is told, the screen is not
        laid out again. The scrollbar is always there (overflow-y: scroll), so the width to wrap
        to never changes with the row shown. A layout walks every widget on screen: one for
        each row shown was most of what a jump to a line cost (issue 9), and when the bar came
        and went with the row's height, about half the jumps on a chat file still paid one."""
        size = Size(self._wrapped_at, height)
        if not self.container_size.height:  # not laid out yet
            self.virtual_size = size
            return
        self.set_reactive(ScrollView.virtual_size, size)
        self.vertical_scrollbar.window_virtual_size = height

    def on_resize(self) -> None:
        self._wrap()

    def notify_style_update(self) -> None:
        # A theme or a rule changed: the styles are looked up again at the next drawing.
        self._styles = ()
        super().notify_style_update()

    def render_lines(self, crop: Region) -> list:
        # The width once per drawing: working it out costs more than drawing a line.
        self._width = self.scrollable_content_region.width
        try:
            return super().render_lines(crop)
        finally:
            self._width = None

    def render_line(self, y: int) -> Strip:
        width = self._width if self._width is not None else self.scrollable_content_region.width
        # The styles once until they change, not once per line nor per drawing: each lookup
        # walks the DOM, and every row shown is a drawing.
        if not self._styles:
            self._styles = (self.rich_style, self.visual_style)
        base, visual = self._styles
        index = round(self.scroll_y) + y
        if index >= len(self._lines):
            return Strip.blank(width, base)
        return Strip(self._lines[index].render_segments(visual)).crop_extend(0, width, base)
