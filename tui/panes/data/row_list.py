"""The row list of the Data pane: one line per row of a file of any size.

A Line API widget: only the rows on screen are read (through the pane's row source) and drawn,
and their summaries are kept in a bounded cache, so the list costs the same for ten rows as for
ten million. Rows appear as the file's index grows; the cursor can go to any indexed row, and
the list waits (in its own worker) for a line not indexed yet.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional

from rich.segment import Segment
from textual import events, work
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from tunedeck.core.data import formats as F
from tunedeck.core.data.line_index import IndexCancelled
from tunedeck.core.data.sources import JSON_ARRAY, sniff_container

from .messages import FileOpened, IndexGrew, LineEntered, LineReached, LineTyped
from .rows import ArrayRows, LineRows, RowSummary, one_line

CACHED_ROWS = 4096
FORMAT_WIDTH = 12
# Rows waited for before the list first shows: more than a screen, within the index's first
# chunk, so the wait is about a millisecond even on a 1 GB file.
FIRST_ROWS = 200
FIRST_ROWS_WAIT_S = 0.1   # past this (a slow disk), the list fills in as the index grows
INDEX_POLL_S = 0.1


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
    # Cursor keys: ids, so a keymap can move them, and no description, so the palette leaves
    # them to the list as it does a Textual widget's own.
    BINDINGS = [
        Binding("up", "move(-1)", "", show=False, id="row-up"),
        Binding("down", "move(1)", "", show=False, id="row-down"),
        Binding("pageup", "page(-1)", "", show=False, id="row-page-up"),
        Binding("pagedown", "page(1)", "", show=False, id="row-page-down"),
        Binding("home", "first", "", show=False, id="first-row"),
        Binding("end", "last", "", show=False, id="last-row"),
    ]

    # No repaint of the whole list when it moves: watch_cursor repaints the two lines it changes.
    cursor = reactive(0, init=False, repaint=False)

    def __init__(self, on_cursor: Callable[[int], None], **kwargs):
        super().__init__(**kwargs)
        # Called with the row under the cursor as it moves: at once, not through a message,
        # so the row's view is redrawn in the same frame as the list (a message came round
        # after the list's frame, and a key such as Up cost two frames).
        self.on_cursor = on_cursor
        self.source = None
        self._cache: "OrderedDict[int, RowSummary]" = OrderedDict()
        self._line_width = 4
        self._styles: dict = {}
        self._region: Optional[Region] = None  # the rows' region, during a drawing
        self.typed: Optional[str] = None  # a line number being typed, after the go-to key
        self._ticker: Optional[Timer] = None
        self.path: Optional[Path] = None  # the file shown, or being read

    # -- the file ------------------------------------------------------------------------------
    def open_file(self, path: Path, keys: F.FeatureKeys):
        """Show the rows of ``path`` and return them; OSError when it cannot be read.

        A JSON Lines or text file's first rows are indexed and shown now, and its index grows
        in the background (IndexGrew until it is done). A JSON array is parsed whole, as
        mlx-lm and the converters do, in the list's worker: None now, FileOpened when read.
        """
        self.close_file()
        self.path = path
        container = sniff_container(path)
        if container == JSON_ARRAY:
            self._read_array(path, keys)
            return None
        # Here, not in a worker: the first rows of any file are indexed within a millisecond
        # or two, and showing them in the same frame spares a round trip through the event
        # loop, which is slow while the index thread competes with it for the interpreter.
        rows = LineRows.open(path, container, FIRST_ROWS, FIRST_ROWS_WAIT_S, keys)
        self.show_source(rows)
        if not rows.done:
            self._ticker = self.set_interval(INDEX_POLL_S, self._index_grew)
        return rows

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-open")
    def _read_array(self, path: Path, keys: F.FeatureKeys) -> None:
        try:
            rows = ArrayRows.open(path, keys)
        except OSError as exc:
            self.post_message(FileOpened(path, error=f"{path}: {exc.strerror or exc}"))
            return
        self.post_message(FileOpened(path, rows))

    def on_file_opened(self, message: FileOpened) -> None:
        if message.path != self.path:
            message.stop()  # another file was opened since
        elif message.rows is not None:
            self.show_source(message.rows)

    def _index_grew(self) -> None:
        self.grow()
        done = self.source is not None and self.source.done
        if done and self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.post_message(IndexGrew(done))

    def close_file(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if self.source is not None:
            self.source.close()
        self.show_source(None)

    def on_unmount(self) -> None:
        if self.source is not None:
            self.source.close()

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
            self.on_cursor(0)

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
        # The two lines whose look changed, not the whole list: a frame draws every widget over
        # the lines it repaints (the pane and its containers behind the list included), so a
        # repainted list cost a key such as Up most of its frame. A scroll repaints it all anyway.
        self.refresh_line(old)
        self.refresh_line(new)
        self.on_cursor(new)

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
        self.post_message(LineTyped(""))

    def on_key(self, event: events.Key) -> None:
        if self.typed is None:
            if self.source is not None and self._goes_to_line(event.key):
                # Started here, not by the pane's binding: a binding runs once the key has
                # bubbled up to the App, and a digit typed right after it (fast typing, a busy
                # machine) had reached this list by then and was lost.
                event.stop()
                event.prevent_default()
                self.type_line()
            return
        if event.character is not None and event.character.isdigit():
            self.typed += event.character
        elif event.key == "backspace":
            self.typed = self.typed[:-1]
        elif event.key == "enter" and self.typed:
            # The pane says where the cursor went, or that the line is still to be indexed: no
            # LineTyped after it, whose file summary would cover that at once.
            line, self.typed = int(self.typed), None
            event.stop()
            event.prevent_default()
            self.post_message(LineEntered(line))
            return
        elif event.key in ("escape", "enter"):
            self.typed = None
        else:
            self.typed = None  # any other key ends the typing and does what it does
            self.post_message(LineTyped(None))
            return
        event.stop()
        event.prevent_default()
        self.post_message(LineTyped(self.typed))

    def _goes_to_line(self, key: str) -> bool:
        """Whether ``key`` is bound to going to a line where this list is (the user's keymap
        applied: Textual's bindings of each node, a private attribute)."""
        return any(binding.action == "go_to_line"
                   for node in self.ancestors_with_self
                   for binding in node._bindings.key_to_bindings.get(key, ()))

    def go_to_line(self, line: int) -> Optional[int]:
        """Put the cursor on the row of ``line`` and return it; None when the line is not
        indexed yet (the list waits for it: LineReached says when) or past the end (said)."""
        rows = self.source
        if rows is None or line < 1:
            return None
        row = rows.row_at_line(line)
        if row is not None:
            self.go_to(row)
        elif not rows.done:
            self._reach_line(rows, line)
        else:
            self.notify(f"{rows.path.name} has {rows.known:,} lines: no line {line:,}",
                        severity="warning")
        return row

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-jump")
    def _reach_line(self, rows, line: int) -> None:
        try:
            found = rows.wait_for_line(line)
        except IndexCancelled:
            found = False
        self.post_message(LineReached(rows.path, line, found))

    def on_click(self, event) -> None:
        row = round(self.scroll_y) + event.y
        if 0 <= row < self.row_count:
            self.cursor = row

    # -- drawing -------------------------------------------------------------------------------
    def _summary(self, row: int) -> Optional[RowSummary]:
        summary = self._cache.get(row)
        if summary is None:
            # Read the whole screen from here in one go: the next lines are drawn next.
            height = (self._region or self.scrollable_content_region).height or 1
            for offset, s in enumerate(self.source.summaries(row, height)):
                self._cache[row + offset] = s
            while len(self._cache) > CACHED_ROWS:
                self._cache.popitem(last=False)
            summary = self._cache.get(row)
        else:
            self._cache.move_to_end(row)
        return summary

    def notify_style_update(self) -> None:
        # A theme, the focus (the cursor's colour) or a rule changed: the styles are looked up
        # again at the next drawing.
        self._styles = {}
        super().notify_style_update()

    def _looked_up_styles(self) -> dict:
        # Once until they change, not once per line nor per drawing: each lookup walks the
        # DOM, and Textual forgets its own at every refresh, so at every cursor move.
        if not self._styles:
            base = self.rich_style
            styles = {"": base, **{name: base + self.get_component_rich_style(name)
                                   for name in self.COMPONENT_CLASSES}}
            styles["row-list--cursor"] = self.get_component_rich_style("row-list--cursor")
            self._styles = styles
        return self._styles

    def render_lines(self, crop: Region) -> list:
        # The region once per drawing: working it out costs more than drawing a line.
        self._region = self.scrollable_content_region
        try:
            return super().render_lines(crop)
        finally:
            self._region = None

    def render_line(self, y: int) -> Strip:
        region = self._region or self.scrollable_content_region
        width = region.width
        styles = self._looked_up_styles()
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
