"""One glance at a run: its state, where it is, how fast it goes and when it will be done (the
text of each figure is ``core.status_text``'s, shared with ``tunedeck train``'s status line)."""

from __future__ import annotations

from rich.cells import cell_len
from rich.segment import Segment
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Horizontal
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Label

from tunedeck.core.status_text import RunFigures, status_figures
from tunedeck.core.text import visible

from ...widgets.covered import covered_lines

STATES = ("starting", "running", "stalled", "finished", "failed", "stopped", "interrupted",
          "following", "ended", "no run")


class Figures(Widget):
    """Figures separated by dots, wrapped between figures, never inside one.

    Its lines are drawn as strips of plain text (the figures carry no markup): a second's tick of
    the elapsed time then costs a tenth of what a Rich text, turned into Textual content and
    wrapped again at each drawing, did.
    """

    DEFAULT_CSS = "Figures { height: auto; }"
    SEPARATOR = "  ·  "  # wider than the command's: a pane has the room

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parts: list[str] = []
        self._wrapped_at: tuple[int, list[str]] = (-1, [])  # (width, lines) of self.parts

    def show(self, parts: list[str]) -> None:
        if parts == self.parts:
            return
        # A new layout only when the figures need another number of lines (it costs).
        width = self.size.width or 80
        before = len(self._lines(width))
        self.parts = parts
        self._wrapped_at = (-1, [])
        self.refresh(layout=len(self._lines(width)) != before)

    def _lines(self, width: int) -> list[str]:
        if self._wrapped_at[0] != width:
            self._wrapped_at = (width, self._lines_of(self.parts, width))
        return self._wrapped_at[1]

    def _lines_of(self, parts: list[str], width: int) -> list[str]:
        lines: list[str] = []
        for part in parts:
            if lines and cell_len(lines[-1] + self.SEPARATOR + part) <= width:
                lines[-1] += self.SEPARATOR + part
            else:
                lines.extend(self._wrapped(part, width))
        return lines or [""]

    @staticmethod
    def _wrapped(part: str, width: int) -> list[str]:
        """A figure wider than the line (an error with what to try) wraps between its words."""
        if width <= 0 or cell_len(part) <= width:
            return [part]
        lines = [""]
        for word in part.split(" "):
            if lines[-1] and cell_len(lines[-1] + " " + word) > width:
                lines.append(word)
            else:
                lines[-1] = f"{lines[-1]} {word}" if lines[-1] else word
        return lines

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._lines(width))

    def render_lines(self, crop: Region) -> list[Strip]:
        # Drawn here, not line by line through Textual's styles cache (its borders, padding and
        # tint, none of which the figures have): the line changes once a second.
        width = self.size.width
        lines = self._lines(width)
        style = self.rich_style
        background = self.visual_style.background or Color(0, 0, 0, 0)
        filters = self.get_line_filters()
        strips = []
        for y in crop.line_range:
            strip = Strip([Segment(lines[y] if y < len(lines) else "", style)]).adjust_cell_length(width, style)
            for line_filter in filters:
                strip = strip.apply_filter(line_filter, background)
            strips.append(strip.crop(crop.x, crop.right))
        return strips


class RunStatusLine(Horizontal):
    DEFAULT_CSS = """
    RunStatusLine { height: auto; background: $surface; color: $foreground; padding: 0 1 0 0; }
    RunStatusLine > #state { width: auto; padding: 0 1; text-style: bold; background: $panel; color: $foreground; }
    RunStatusLine > #state.-running { background: $success; color: $background; }
    RunStatusLine > #state.-starting { background: $primary; color: $background; }
    RunStatusLine > #state.-following { background: $primary; color: $background; }
    RunStatusLine > #state.-stalled { background: $warning; color: $background; }
    RunStatusLine > #state.-failed { background: $error; color: $background; }
    RunStatusLine > #state.-interrupted { background: $warning; color: $background; }
    RunStatusLine > #state.-finished { background: $secondary; color: $background; }
    RunStatusLine > Figures { width: 1fr; }
    """
    render_lines = covered_lines  # the badge, the figures and a padding of its background

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Kept, not looked up: the line is shown once a second while a run trains.
        self.badge = Label("no run", id="state")
        self.figures = Figures()
        self.state = "no run"

    def compose(self) -> ComposeResult:
        yield self.badge
        yield self.figures

    def show(self, figures: RunFigures, now: float) -> None:
        if figures.state != self.state:
            self.state = figures.state
            self.badge.update(figures.state)
            for state in STATES:
                self.badge.set_class(state == figures.state, f"-{state.replace(' ', '-')}")
        self.figures.show(status_figures(figures, now, shown=visible))
