"""One glance at a run: its state, where it is, how fast it goes and when it will be done."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Label

from ...widgets.literal import visible

STATES = ("starting", "running", "stalled", "finished", "failed", "stopped", "interrupted",
          "following", "ended", "no run")


@dataclass
class RunFigures:
    """What the status line shows; every field may be unknown."""

    name: str = ""
    state: str = "no run"
    iteration: int = 0
    total_iters: int = 0
    loss: Optional[float] = None
    tokens_per_sec: Optional[float] = None
    peak_mem_gb: Optional[float] = None
    elapsed_s: Optional[float] = None
    eta_s: Optional[float] = None
    finish_at: Optional[float] = None   # epoch seconds
    error: Optional[str] = None
    note: str = ""                      # e.g. "stopping after the next checkpoint"
    serving: str = ""                   # the URL of the model server the App runs, if any
    ranks: int = 1                      # processes training the run together (world size)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def rate(tokens_per_sec: float) -> str:
    return f"{tokens_per_sec / 1000:.1f}k" if tokens_per_sec >= 1000 else f"{tokens_per_sec:.0f}"


def finish_time(at: float, now: float) -> str:
    local, today = time.localtime(at), time.localtime(now)
    same_day = local[:3] == today[:3]
    return time.strftime("%H:%M" if same_day else "%a %H:%M", local)


class Figures(Widget):
    """Figures separated by dots, wrapped between figures, never inside one."""

    DEFAULT_CSS = "Figures { height: auto; }"
    SEPARATOR = "  ·  "

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parts: list[str] = []

    def show(self, parts: list[str]) -> None:
        if parts == self.parts:
            return
        # A new layout only when the figures need another number of lines (it costs).
        width = self.size.width or 80
        relayout = len(self._lines(width)) != len(self._lines_of(parts, width))
        self.parts = parts
        self.refresh(layout=relayout)

    def _lines(self, width: int) -> list[str]:
        return self._lines_of(self.parts, width)

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

    def render(self) -> Text:
        return Text("\n".join(self._lines(self.size.width)))


class RunStatusLine(Horizontal):
    DEFAULT_CSS = """
    RunStatusLine { height: auto; }
    RunStatusLine > #state { width: auto; padding: 0 1; text-style: bold; }
    RunStatusLine > Figures { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Label("no run", id="state")
        yield Figures()

    def show(self, figures: RunFigures, now: float) -> None:
        badge = self.query_one("#state", Label)
        if str(badge.content) != figures.state:
            badge.update(figures.state)
            for state in STATES:
                badge.set_class(state == figures.state, f"-{state.replace(' ', '-')}")
        self.query_one(Figures).show(self._describe(figures, now))

    @staticmethod
    def _describe(f: RunFigures, now: float) -> list[str]:
        parts = [visible(f.name)] if f.name else []
        if f.total_iters:
            parts.append(f"iter {f.iteration}/{f.total_iters} ({100 * f.iteration / f.total_iters:.0f}%)")
        elif f.iteration:
            parts.append(f"iter {f.iteration}")
        if f.loss is not None:
            parts.append(f"loss {f.loss:.3f}")
        if f.ranks > 1:
            parts.append(f"{f.ranks} ranks")
        if f.tokens_per_sec is not None:
            # With several ranks mlx-lm reports the tokens of them all: say so.
            parts.append(f"{rate(f.tokens_per_sec)} tok/s" + (" total" if f.ranks > 1 else ""))
        if f.peak_mem_gb is not None:
            parts.append(f"peak {f.peak_mem_gb:.2f} GB")
        if f.elapsed_s is not None:
            parts.append(f"elapsed {duration(f.elapsed_s)}")
        if f.eta_s is not None:
            parts.append(f"ETA {duration(f.eta_s)}")
        if f.finish_at is not None:
            parts.append(f"finish {finish_time(f.finish_at, now)}")
        if f.note:
            parts.append(f.note)
        if f.serving:
            parts.append(f"serving {f.serving}")
        if f.error:
            parts.append(f"error: {visible(f.error)}")
        return parts
