"""A line chart drawn by plotext: the loss and learning-rate plots' canvas.

plotext draws the braille curves, the frame and the ticks; this module says what to draw (at
most one point per column, see loss_plot.downsample), picks the ticks (whole iterations on x,
evenly spread values or ratios on y, labelled as the status line writes them), does the log
scale itself (plotext's own drops its limits when the ticks are given) and turns plotext's
coloured text into Textual strips.

Costs measured on this 2-core machine (160x48, three curves of 160 points): plotext 6.1 takes
13 ms of CPU per drawing where the hand-drawn braille chart it replaced took 7.5 ms (process
time, same process, alternating, at load 15); plotext 5.3 took 126 ms, so 6.x (its kernel in
C++) is required. plotext takes seconds to import (1.2 s of 2.7 s at load 8 is building its own
documentation), too long for the first frame: it is imported in a thread the first time a chart
with data is asked for, or earlier when a pane knows it will draw soon (``PLOTEXT.ready``), and
until it is there ``draw`` returns None.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

X_TICKS = 5
Y_TICKS = 5

_SGR = re.compile("\x1b\\[([0-9;]*)m")

log = logging.getLogger(__name__)


class _Library:
    """plotext, imported once in a thread of its own; who asked before it was there is told."""

    def __init__(self) -> None:
        self.module = None
        self.failed = False
        self._lock = threading.Lock()
        self._waiting: list[Callable[[], None]] = []

    def ready(self, when_ready: Callable[[], None]) -> bool:
        """True if plotext is there; else start importing it (once) and call ``when_ready()``
        from the importing thread when it is (or when the import failed)."""
        with self._lock:
            if self.module is not None or self.failed:
                return True
            self._waiting.append(when_ready)
            first = len(self._waiting) == 1
        if first:
            threading.Thread(target=self._load, name="import-plotext", daemon=True).start()
        return False

    def _load(self) -> None:
        try:
            import plotext

            plotext.terminal.limit(False, False)  # the widget's size bounds the plot, not the terminal's
        except Exception:
            log.exception("plotext could not be imported: the plots stay empty")
            plotext, self.failed = None, True
        with self._lock:
            self.module = plotext
            waiting, self._waiting = self._waiting, []
        for call in waiting:
            call()


PLOTEXT = _Library()


@dataclass
class Curve:
    xs: Sequence[float]
    ys: Sequence[float]
    style: Style


@dataclass
class Chart:
    curves: list[Curve] = field(default_factory=list)
    markers: list[tuple[float, float, str, Style]] = field(default_factory=list)
    log_y: bool = False
    title: str = ""


def _ticks(first: int, last: int, count: int = X_TICKS) -> list[int]:
    """Whole iteration numbers, evenly spread from the first to the last."""
    count = min(count, last - first + 1)
    return sorted({round(first + (last - first) * k / max(1, count - 1)) for k in range(count)})


def _label(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _rgb(style: Style) -> tuple[int, int, int]:
    color = style.color or Color.default()
    return tuple(color.get_truecolor())  # type: ignore[return-value]


def message_lines(text: str, width: int, height: int, axis: Style, base: Style) -> list[Strip]:
    lines = [text] + [""] * (height - 1)
    return [Strip([Segment(line.center(width)[:width], axis)]).apply_style(base) for line in lines]


def draw(chart: Chart, width: int, height: int, axis: Style, base: Style) -> Optional[list[Strip]]:
    """The chart as ``height`` screen lines of ``width`` cells; None while plotext loads."""
    points = [(x, y) for c in chart.curves for x, y in zip(c.xs, c.ys)]
    points += [(x, y) for x, y, _, _ in chart.markers]
    if chart.log_y:
        points = [(x, y) for x, y in points if y > 0]
    if not points or height < 4 or width < 8:
        return message_lines(chart.title or "waiting for the first report", width, height, axis, base)
    plt = PLOTEXT.module
    if plt is None:
        return message_lines("the chart library failed to load", width, height, axis, base) if PLOTEXT.failed else None

    # The log scale is done here: plotext's own loses its limits when the ticks are given.
    scale = math.log10 if chart.log_y else float
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(scale(p[1]) for p in points), max(scale(p[1]) for p in points)
    if y1 - y0 <= abs(y1) * 1e-9:  # a flat curve (a constant learning rate): centre it
        pad = 0.5 if chart.log_y else max(abs(y0) * 0.1, 1e-12)
        y0, y1 = y0 - pad, y1 + pad
    if x1 == x0:
        x1 = x0 + 1
    y_ticks = [y0 + (y1 - y0) * k / (Y_TICKS - 1) for k in range(Y_TICKS)]
    x_ticks = _ticks(math.floor(x0), math.ceil(x1))

    figure = plt.figure
    figure.clear()
    figure.plot_size(width, height)
    figure.theme("colorless")  # the frame in the axis style (see _strips), the canvas unpainted
    figure.canvas("default")
    figure.axes(False, axis="x", side="upper")
    figure.axes(False, axis="y", side="right")
    if chart.title:
        figure.title(chart.title)
    x_ruler, y_ruler = figure.ruler("x"), figure.ruler("y")
    x_ruler.lim(x0, x1)
    y_ruler.lim(y0, y1)
    x_ruler.ticks(x_ticks, [str(tick) for tick in x_ticks])
    y_ruler.ticks(y_ticks, [_label(10 ** v if chart.log_y else v) for v in y_ticks])
    for curve in chart.curves:
        kept = [(x, scale(y)) for x, y in zip(curve.xs, curve.ys) if not (chart.log_y and y <= 0)]
        if kept:
            xs, ys = zip(*kept)
            marker = plt.marker("braille", _rgb(curve.style))
            figure.draw(figure.signal(list(xs), list(ys), marker=marker).lines())
    for x, y, char, style in chart.markers:
        if not (chart.log_y and y <= 0):
            figure.draw(figure.signal([x], [scale(y)], marker=plt.marker(char, _rgb(style))))
    return _strips(figure.build().string(), width, height, axis, base)


def _strips(text: str, width: int, height: int, axis: Style, base: Style) -> list[Strip]:
    """plotext's coloured text as strips: its colours kept, what it left uncoloured (the frame,
    the ticks) in the axis style, its backgrounds dropped (the widget's own shows)."""
    plain_style = base + axis
    styles: dict[str, Optional[Style]] = {}
    lines = []
    for line in text.split("\n")[:height]:
        segments, style = [], plain_style
        for k, part in enumerate(_SGR.split(line)):
            if k % 2:
                if part not in styles:
                    found = _foreground(part, axis)
                    styles[part] = None if found is None else base + found
                style = styles[part] or style
            elif part:
                segments.append(Segment(part, style))
        lines.append(Strip(segments, width))
    lines += [Strip.blank(width, base)] * (height - len(lines))
    return lines


def _foreground(codes: str, axis: Style) -> Optional[Style]:
    """The style an SGR sequence sets, None if it leaves the foreground: only that counts."""
    params = codes.split(";") if codes else ["0"]
    style = None
    k = 0
    while k < len(params):
        code = params[k]
        if code in ("0", ""):
            style = axis
        elif code == "39":
            style = axis
        elif code == "38" and k + 1 < len(params):
            if params[k + 1] == "2" and k + 4 < len(params):
                style = Style(color=Color.from_rgb(*map(int, params[k + 2:k + 5])))
                k += 4
            elif params[k + 1] == "5" and k + 2 < len(params):
                style = Style(color=Color.from_ansi(int(params[k + 2])))
                k += 2
        elif code == "48" and k + 1 < len(params):
            k += 4 if params[k + 1] == "2" else 2  # a background: dropped
        k += 1
    return style


def plain(lines: list[Strip]) -> str:
    """The chart's text, for tests and for reading in a log."""
    return "\n".join(line.text for line in lines)
