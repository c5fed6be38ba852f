"""The row list of the Data pane: one line per row of a file of any size.

A Line API widget: only the rows on screen are read (through the pane's row source) and drawn,
and their summaries are kept in a bounded cache, so the list costs the same for ten rows as for
ten million. Rows appear as the file's index grows; the cursor can go to any indexed row.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .rows import RowSummary, one_line

CACHED_ROWS = 4096
FORMAT_WIDTH = 12


class RowList(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    RowList {
        height: 1fr;
        overflow-x: hidden;
        background: $surface;
        scrollbar-size-vertical: 1;
    }
    RowList > .row-list--line { color: $text-muted; }
    RowList > .row-list--format { color: $secondary; }
    RowList > .row-list--error { color: $text-error; }
    RowList > .row-list--warning { color: $text-warning; }
    RowList > .row-list--cursor { background: $block-cursor-blurred-background; }
    RowList:focus > .row-list--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    """
    COMPONENT_CLASSES = {"row-list--line", "row-list--format", "row-list--error",
                         "row-list--warning", "row-list--cursor"}
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First row", show=False),
        Binding("end", "last", "Last row", show=False),
    ]

    cursor = reactive(0, init=False)

    class RowHighlighted(Message):
        def __init__(self, row: int):
            super().__init__()
            self.row = row

    class LineTyped(Message):
        """The line number being typed changed; None when typing it ended."""

        def __init__(self, text: Optional[str]):
            super().__init__()
            self.text = text

    class LineEntered(Message):
        def __init__(self, line: int):
            super().__init__()
            self.line = line

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.source = None
        self._cache: "OrderedDict[int, RowSummary]" = OrderedDict()
        self._line_width = 4
        self._styles: dict = {}
        self.typed: Optional[str] = None  # a line number being typed, after the go-to key

    @property
    def row_count(self) -> int:
        """Rows that can be shown now (the file's index may still be growing)."""
        return self.source.known if self.source is not None else 0

    def show_source(self, source) -> None:
        """Browse ``source`` (rows.py) from its first row."""
        self.source = source
        self._cache.clear()
        self.set_reactive(RowList.cursor, 0)
        self.grow()
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()
        if self.row_count:
            self.post_message(self.RowHighlighted(0))

    def forget(self) -> None:
        """The rows were read again (a file was rewritten): re-read what is on screen."""
        self._cache.clear()
        self.refresh()

    def grow(self) -> None:
        """Take in the rows indexed since the last call."""
        rows = self.row_count
        estimate = self.source.estimated_rows() if self.source is not None else 0
        last_line = self.source.line_of(rows - 1) if rows else 0
        self._line_width = max(4, len(str(max(estimate, last_line))))
        self.virtual_size = Size(self.size.width, rows)
        self.refresh()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.row_count)

    # -- the cursor ----------------------------------------------------------------------------
    def go_to(self, row: int) -> None:
        """Put the cursor on ``row``, scrolled to the middle of the list when off screen."""
        row = max(0, min(row, self.row_count - 1))
        if row < 0:
            return
        top, height = round(self.scroll_y), self.scrollable_content_region.height
        if not top <= row < top + height:
            self.scroll_to(y=max(0, row - height // 2), animate=False, immediate=True)
        self.cursor = row

    def _move_to(self, row: int) -> None:
        """Put the cursor on ``row``, scrolling as little as possible."""
        row = max(0, min(row, self.row_count - 1))
        if row < 0:
            return
        top, height = round(self.scroll_y), self.scrollable_content_region.height
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)
        self.cursor = row

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh()
        self.post_message(self.RowHighlighted(new))

    def action_move(self, step: int) -> None:
        self._move_to(self.cursor + step)

    def action_page(self, step: int) -> None:
        self._move_to(self.cursor + step * max(1, self.scrollable_content_region.height - 1))

    def action_first(self) -> None:
        self._move_to(0)

    def action_last(self) -> None:
        self._move_to(self.row_count - 1)

    # -- typing a line number ------------------------------------------------------------------
    def type_line(self) -> None:
        """Take digits as a line number, Enter to go there, Escape to give up.

        Typed here rather than into a text field, which would take the focus and give it back:
        each move of the focus restyles what it leaves and enters and swaps the footer's keys,
        which costs more than the jump itself.
        """
        self.typed = ""
        self.post_message(self.LineTyped(""))

    def on_key(self, event: events.Key) -> None:
        if self.typed is None:
            return
        if event.character is not None and event.character.isdigit():
            self.typed += event.character
        elif event.key == "backspace":
            self.typed = self.typed[:-1]
        elif event.key == "enter" and self.typed:
            self.post_message(self.LineEntered(int(self.typed)))
            self.typed = None
        elif event.key in ("escape", "enter"):
            self.typed = None
        else:
            self.typed = None  # any other key ends the typing and does what it does
            self.post_message(self.LineTyped(None))
            return
        event.stop()
        event.prevent_default()
        self.post_message(self.LineTyped(self.typed))

    def on_click(self, event) -> None:
        row = round(self.scroll_y) + event.y
        if 0 <= row < self.row_count:
            self.cursor = row

    # -- drawing -------------------------------------------------------------------------------
    def _summary(self, row: int) -> Optional[RowSummary]:
        summary = self._cache.get(row)
        if summary is None:
            # Read the whole screen from here in one go: the next lines are drawn next.
            height = self.scrollable_content_region.height or 1
            for offset, s in enumerate(self.source.summaries(row, height)):
                self._cache[row + offset] = s
            while len(self._cache) > CACHED_ROWS:
                self._cache.popitem(last=False)
            summary = self._cache.get(row)
        else:
            self._cache.move_to_end(row)
        return summary

    def render_lines(self, crop: Region) -> list:
        # The styles once per drawing, not once per line: each lookup walks the DOM.
        base = self.rich_style
        self._styles = {"": base, **{name: base + self.get_component_rich_style(name)
                                     for name in self.COMPONENT_CLASSES}}
        self._styles["row-list--cursor"] = self.get_component_rich_style("row-list--cursor")
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        styles = self._styles
        base = styles[""]
        row = round(self.scroll_y) + y
        if self.source is None or row >= self.row_count:
            return Strip.blank(width, base)
        summary = self._summary(row)
        if summary is None:
            return Strip.blank(width, base)
        cursor = styles["row-list--cursor"] if row == self.cursor else None
        parts = [(f"{summary.line:>{self._line_width}} ", styles["row-list--line"]),
                 (f"{summary.format:<{FORMAT_WIDTH}.{FORMAT_WIDTH - 1}}",
                  styles["row-list--format"])]
        if summary.error:
            parts.append((f"✗ {one_line(summary.error)}  ", styles["row-list--error"]))
        elif summary.warning:
            parts.append((f"! {one_line(summary.warning)}  ", styles["row-list--warning"]))
        # No more characters than cells: measuring the rest of a long preview (slow for
        # non-ASCII text) would be wasted on what is cut off.
        parts.append((summary.preview[:width], base))
        segments = [Segment(text, style + cursor if cursor else style) for text, style in parts]
        return Strip(segments).crop_extend(0, width, base + cursor if cursor else base)
