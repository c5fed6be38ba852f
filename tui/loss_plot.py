"""The loss curves (train, val, an overlaid run) and the learning rate, drawn with plotext.

A plotext build costs tens of milliseconds, so plots never redraw per event: new data marks them
stale, and a stale plot redraws at once if it has not drawn for a while, else as soon as that
while is over (at most about seven times a second, however fast a run reports). Every series is
first reduced to one point per column of the plot (bucket means), so the cost does not grow with
the run's length.
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence

from rich.text import Text
from textual.color import Color
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from .run_history import Series

MIN_REDRAW_INTERVAL_S = 0.15
SMOOTHING_STEPS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)


def downsample(iters: Sequence[int], values: Sequence[float], buckets: int) -> tuple[list, list, int]:
    """At most ``buckets`` points: the mean of each run of consecutive points, placed at the
    run's last iteration. Returns the points and how many raw points each one stands for."""
    n = len(values)
    if n <= buckets:
        return list(iters), list(values), 1
    size = math.ceil(n / buckets)
    xs = [iters[min(i + size, n) - 1] for i in range(0, n, size)]
    ys = [sum(values[i:i + size]) / len(values[i:i + size]) for i in range(0, n, size)]
    return xs, ys, size


def smooth(values: list[float], factor: float, points_per_value: int = 1) -> list[float]:
    """Exponential moving average with start-up bias corrected (as TensorBoard's slider).

    On downsampled values the decay per value is ``factor ** points_per_value``, which keeps
    the curve close to smoothing the raw points first, at a fraction of the cost.
    """
    if factor <= 0 or not values:
        return values
    decay = factor ** points_per_value
    out, average, weight = [], 0.0, 0.0
    for value in values:
        average = decay * average + (1 - decay) * value
        weight = decay * weight + (1 - decay)
        out.append(average / weight)
    return out


class StalePlot(PlotextPlot):
    """A plotext plot redrawn on a timer, only when its data changed or it was resized."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._stale = True
        self._redraw_due = False
        self._drawn_at = 0.0
        self._drawn: Optional[Text] = None
        self._drawn_for: tuple = ()

    def mark_stale(self) -> None:
        self._stale = True
        if self._redraw_due or not self.is_mounted:
            return  # a mounted plot draws anyway
        self._redraw_due = True
        wait = self._drawn_at + MIN_REDRAW_INTERVAL_S - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self._redraw)
        else:
            self.call_later(self._redraw)  # Textual's timers cannot wait zero seconds

    def _redraw(self) -> None:
        self._redraw_due = False
        self.refresh()

    def colour(self, variable: str) -> tuple[int, int, int]:
        return Color.parse(self.app.theme_variables[variable]).rgb

    def render(self) -> Text:
        key = (self.size, self.app.theme)
        if self._drawn is None or self._stale or key != self._drawn_for:
            self._stale = False
            self.plt.clear_figure()
            self.draw(max(10, self.size.width - 12))  # the y axis labels take about 12 columns
            self._drawn, self._drawn_for = super().render(), key
            self._drawn_at = time.monotonic()
        return self._drawn

    def draw(self, columns: int) -> None:
        raise NotImplementedError

    def integer_ticks(self, first: int, last: int) -> None:
        """Whole iteration numbers on the x axis (plotext would print 30.8)."""
        count = 5 if last - first >= 4 else last - first + 1
        ticks = sorted({round(first + (last - first) * k / max(1, count - 1)) for k in range(count)})
        self.plt.xticks(ticks, [str(t) for t in ticks])


class LossPlot(StalePlot):
    """Train and val loss of the run, the best val marked, optionally another run's curve."""

    smoothing: reactive[float] = reactive(0.0)
    log_scale: reactive[bool] = reactive(False)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.train = Series()
        self.val = Series()
        self.best: Optional[tuple[int, float]] = None
        self.overlay: Optional[Series] = None
        self.overlay_label = ""

    def show(self, train: Series, val: Series, best: Optional[tuple[int, float]]) -> None:
        self.train, self.val, self.best = train, val, best
        self.mark_stale()

    def show_overlay(self, series: Optional[Series], label: str = "") -> None:
        self.overlay, self.overlay_label = series, label
        self.mark_stale()

    def watch_smoothing(self) -> None:
        self.mark_stale()

    def watch_log_scale(self) -> None:
        self.mark_stale()

    def draw(self, columns: int) -> None:
        # No plotext legend: it would cover the start of the curve. The pane shows a key above.
        plt = self.plt
        drawn = [s for s in (self.overlay, self.train, self.val) if s is not None and len(s)]
        if not drawn:
            plt.title("waiting for the first loss report")
            return
        # plotext cannot place an empty or non-positive series on a log axis.
        plt.yscale("log" if self.log_scale and all(min(s.values) > 0 for s in drawn) else "linear")
        if self.overlay is not None and len(self.overlay):
            xs, ys, k = downsample(self.overlay.iters, self.overlay.values, columns)
            plt.plot(xs, smooth(ys, self.smoothing, k), marker="braille", color=self.colour("plot-overlay"))
        if len(self.train):
            xs, ys, k = downsample(self.train.iters, self.train.values, columns)
            plt.plot(xs, smooth(ys, self.smoothing, k), marker="braille", color=self.colour("plot-train"))
        if len(self.val):
            xs, ys, _ = downsample(self.val.iters, self.val.values, columns)
            plt.plot(xs, ys, marker="braille", color=self.colour("plot-val"))
        if self.best is not None:
            plt.scatter([self.best[0]], [self.best[1]], marker="◆", color=self.colour("plot-best"))
        self.integer_ticks(min(s.iters[0] for s in drawn), max(s.iters[-1] for s in drawn))


class LearningRatePlot(StalePlot):
    """The learning rate on its own axis: its scale has nothing in common with the loss."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lr = Series()

    def show(self, lr: Series) -> None:
        self.lr = lr
        self.mark_stale()

    def draw(self, columns: int) -> None:
        plt = self.plt
        plt.title("learning rate")
        if len(self.lr):
            xs, ys, _ = downsample(self.lr.iters, self.lr.values, columns)
            plt.plot(xs, ys, marker="braille", color=self.colour("plot-lr"))
            self.integer_ticks(self.lr.iters[0], self.lr.iters[-1])
