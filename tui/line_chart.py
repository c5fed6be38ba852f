"""A line chart drawn with braille dots: the loss and learning-rate plots' canvas.

Written for speed rather than generality (plotext took tens of milliseconds per drawing, and
the status line waited for it): each cell holds 2x4 dots, lines between consecutive points are
stepped dot by dot, and each screen line becomes a few segments, one per run of a colour.
A chart of 150 points on 160x30 cells draws in a few milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

# Bit of each dot of a braille cell, by (column, row) inside the cell.
_DOT = {(0, 0): 0x01, (0, 1): 0x02, (0, 2): 0x04, (1, 0): 0x08,
        (1, 1): 0x10, (1, 2): 0x20, (0, 3): 0x40, (1, 3): 0x80}
X_TICKS = 5
Y_TICKS = 5


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


def draw(chart: Chart, width: int, height: int, axis: Style, base: Style) -> list[Strip]:
    """The chart as ``height`` screen lines of ``width`` cells."""
    points = [(x, y) for c in chart.curves for x, y in zip(c.xs, c.ys)]
    points += [(x, y) for x, y, _, _ in chart.markers]
    if chart.log_y:
        points = [(x, y) for x, y in points if y > 0]
    top_rows = 1 if chart.title else 0
    rows = height - 2 - top_rows  # the x axis and its labels below
    if not points or rows < 1:
        lines = [chart.title or "waiting for the first report"] + [""] * (height - 1)
        return [Strip([Segment(line.center(width)[:width], axis)]).apply_style(base) for line in lines]

    scale = math.log10 if chart.log_y else (lambda v: v)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(scale(p[1]) for p in points), max(scale(p[1]) for p in points)
    if y1 - y0 <= abs(y1) * 1e-9:  # a flat curve (a constant learning rate): centre it
        pad = 0.5 if chart.log_y else max(abs(y0) * 0.1, 1e-12)
        y0, y1 = y0 - pad, y1 + pad
    if x1 == x0:
        x1 = x0 + 1
    y_values = [y0 + (y1 - y0) * k / (Y_TICKS - 1) for k in range(Y_TICKS)]
    y_labels = [_label(10 ** v if chart.log_y else v) for v in y_values]
    label_width = max(len(label) for label in y_labels)
    columns = width - label_width - 1
    if columns < 2:
        return [Strip.blank(width, base) for _ in range(height)]
    dots_x, dots_y = 2 * columns - 1, 4 * rows - 1

    def dot(x: float, y: float) -> tuple[int, int]:
        return (round((x - x0) / (x1 - x0) * dots_x), round((y1 - scale(y)) / (y1 - y0) * dots_y))

    cells: dict[tuple[int, int], int] = {}
    colours: dict[tuple[int, int], Style] = {}
    for curve in chart.curves:
        previous = None
        for x, y in zip(curve.xs, curve.ys):
            if chart.log_y and y <= 0:
                previous = None
                continue
            here = dot(x, y)
            steps = max(abs(here[0] - previous[0]), abs(here[1] - previous[1])) if previous else 0
            for k in range(steps + 1):
                t = k / steps if steps else 1.0
                dx = round(previous[0] + (here[0] - previous[0]) * t) if previous else here[0]
                dy = round(previous[1] + (here[1] - previous[1]) * t) if previous else here[1]
                cell = (dx // 2, dy // 4)
                cells[cell] = cells.get(cell, 0) | _DOT[(dx % 2, dy % 4)]
                colours[cell] = curve.style
            previous = here
    glyphs: dict[tuple[int, int], tuple[str, Style]] = {
        cell: (chr(0x2800 + bits), colours[cell]) for cell, bits in cells.items()}
    for x, y, char, style in chart.markers:
        if not (chart.log_y and y <= 0):
            dx, dy = dot(x, y)
            glyphs[(dx // 2, dy // 4)] = (char, style)

    tick_rows = {round((y1 - v) / (y1 - y0) * (rows - 1)): label for v, label in zip(y_values, y_labels)}
    lines: list[Strip] = []
    if chart.title:
        lines.append(Strip([Segment(chart.title.center(width)[:width], axis)]))
    for row in range(rows):
        label = tick_rows.get(row)
        segments = [Segment((label or "").rjust(label_width) + ("┤" if label else "│"), axis)]
        run_text, run_style = "", None
        for column in range(columns):
            char, style = glyphs.get((column, row), (" ", axis))
            if style is not run_style and run_text:
                segments.append(Segment(run_text, run_style))
                run_text = ""
            run_text, run_style = run_text + char, style
        segments.append(Segment(run_text, run_style))
        lines.append(Strip(segments))

    x_ticks = _ticks(math.floor(x0), math.ceil(x1))
    axis_line = ["─"] * columns
    label_line = [" "] * (width)
    for tick in x_ticks:
        column = min(columns - 1, round((tick - x0) / (x1 - x0) * (columns - 1)))
        axis_line[column] = "┬"
        text = str(tick)
        start = min(max(0, label_width + 1 + column - len(text) // 2), width - len(text))
        if all(c == " " for c in label_line[max(0, start - 1):start + len(text) + 1]):
            label_line[start:start + len(text)] = text
    lines.append(Strip([Segment(" " * label_width + "└" + "".join(axis_line), axis)]))
    lines.append(Strip([Segment("".join(label_line), axis)]))
    return [line.apply_style(base).crop_extend(0, width, base) for line in lines[:height]]


def plain(lines: list[Strip]) -> str:
    """The chart's text, for tests and for reading in a log."""
    return "\n".join(line.text for line in lines)

