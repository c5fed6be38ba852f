"""The loss curves (train, val, an overlaid run) and the learning rate.

Plots never redraw per event: new data marks them stale, and a stale plot redraws at once if it
has not drawn for a while, else as soon as that while is over. For the loss plot that while
follows what its last drawing cost the UI thread (DRAW_SHARE): a drawing of a few hundred points
is not held back behind a fixed interval (a run reporting every 40 ms waited 50 ms on average for
its report to be drawn, at most ten drawings a second), while a costly one still leaves the
thread to the status line and the keys. Every series is first reduced to one point per column of
the plot (bucket means), so the cost of a drawing does not grow with the run's length.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import Optional, Sequence

from rich.style import Style
from textual.geometry import Region
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from tunedeck.core.events import Health
from tunedeck.core.run_history import Series

from ...widgets.line_chart import PLOTEXT, Chart, Curve, draw, message_lines, plain
from ...widgets.severity import SEVERITY_VARIABLE
from .messages import PlotLibraryLoaded

# The longest a stale loss plot waits for its next drawing (at most ten a second, whatever they cost).
MAX_REDRAW_INTERVAL_S = 0.1
# The share of the UI thread's time the loss plot's drawings may take while a run reports fast:
# the wait after a drawing is its CPU time divided by this (a drawing of 10 ms, then 40 ms).
DRAW_SHARE = 0.25
SMOOTHING_STEPS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)
# A health finding on the loss plot, coloured by its severity (theme variables).
FINDING_MARK = "▲"


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


def loss_at(series: Series, iteration: int) -> Optional[float]:
    """The last finite value of ``series`` at or before ``iteration`` (else the first finite one
    after it): where a finding about that iteration sits on the curve."""
    at = bisect.bisect_right(series.iters, iteration)
    for k in (*range(at - 1, -1, -1), *range(at, len(series.values))):
        if math.isfinite(series.values[k]):
            return series.values[k]
    return None


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


class StalePlot(Widget):
    """A plot drawn again whenever its data, size or theme changed, at a bounded rate."""

    DEFAULT_CSS = "StalePlot { width: 1fr; height: 1fr; }"
    max_redraw_interval_s = MAX_REDRAW_INTERVAL_S

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lines: list[Strip] = []
        self._stale = True
        self._redraw_due = False
        self._drawn_at = 0.0
        self._drawing_cpu_s = 0.0  # what the last drawing cost the UI thread
        # The widget's style when the lines were drawn: a line painted again (a frame repaints
        # every line of the plot the curve moved through) pads with it instead of asking the
        # widget, which walks its ancestors for their backgrounds each time.
        self._base = Style()

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _: self.mark_stale())

    def on_resize(self) -> None:
        self.mark_stale()

    def mark_stale(self) -> None:
        self._stale = True
        if self._redraw_due or not self.is_mounted:
            return
        self._redraw_due = True
        wait = self._drawn_at + self.redraw_interval_s() - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self.redraw)
        else:
            self.call_later(self.redraw)  # Textual's timers cannot wait zero seconds

    def redraw_interval_s(self) -> float:
        """The least time between the start of two drawings."""
        return min(self.max_redraw_interval_s, self._drawing_cpu_s / DRAW_SHARE)

    def redraw(self) -> None:
        self._redraw_due = False
        width, height = self.size
        if not (width and height):
            return  # hidden: drawn when it gets a size
        started = time.thread_time()
        axis, self._base = self.style_of("plot-axis"), self.rich_style
        lines = draw(self.chart(width), width, height, axis, self._base)
        self._drawing_cpu_s = time.thread_time() - started
        if lines is None:  # plotext is not imported yet: drawn once it is
            self._redraw_due = True
            # Not "waiting for the first report" meanwhile: the reports are there (a finished
            # run opened on a busy machine showed that for seconds).
            self.lines = message_lines("drawing the chart…", width, height, axis, self._base)
            self.refresh()
            # Once the frame being made is on screen: the import holds the interpreter for a while.
            self.call_after_refresh(self._wait_for_library)
            return
        self._stale, self._drawn_at = False, time.monotonic()
        before, self.lines = self.lines, lines
        if len(before) != len(lines) or any(a.cell_length != b.cell_length for a, b in zip(before, lines)):
            self.refresh()
            return
        # Only the lines that changed are painted again: a new report mostly moves the curve's
        # end, and the frame, the ticks and the empty rows stay (each line painted is CPU of the
        # UI thread, which a fast run's next report waits for).
        changed = [Region(0, y, width, 1) for y, (a, b) in enumerate(zip(before, lines)) if a != b]
        if changed:
            self.refresh(*changed)

    def load_library_soon(self) -> None:
        """Import plotext once the frame being made is on screen, before the first report asks
        for it: the import takes seconds on a busy machine, and the reports that came meanwhile
        waited for it (the long tail of report → plot on screen)."""
        self.call_after_refresh(PLOTEXT.ready, lambda: None)

    def _wait_for_library(self) -> None:
        if PLOTEXT.ready(lambda: self.post_message(PlotLibraryLoaded())):
            self.on_plot_library_loaded()  # imported meanwhile, for another plot

    def on_plot_library_loaded(self) -> None:
        self._redraw_due = False
        self.mark_stale()

    @property
    def settled(self) -> bool:
        """Showing its latest data (or hidden): no drawing due."""
        return not self._redraw_due and (not self._stale or not self.size.area)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        strip = self.lines[y] if y < len(self.lines) else Strip.blank(width, self._base)
        return strip if strip.cell_length == width else strip.crop_extend(0, width, self._base)

    def text(self) -> str:
        """What the plot shows, as plain text."""
        return plain(self.lines)

    def style_of(self, variable: str) -> Style:
        return Style(color=self.app.theme_variables[variable])

    def chart(self, width: int) -> Chart:
        """What to draw, with at most ``width`` points per curve."""
        raise NotImplementedError


class LossPlot(StalePlot):
    """Train and val loss of the run, the best val and the health findings marked, optionally
    another run's curve.

    No legend inside: it would cover the start of the curve. The pane shows a key above.
    """

    smoothing: reactive[float] = reactive(0.0)
    log_scale: reactive[bool] = reactive(False)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.train = Series()
        self.val = Series()
        self.best: Optional[tuple[int, float]] = None
        self.findings: Sequence[Health] = ()
        self.overlay: Optional[Series] = None
        self.overlay_label = ""

    def show(self, train: Series, val: Series, best: Optional[tuple[int, float]],
             findings: Sequence[Health] = ()) -> None:
        self.train, self.val, self.best, self.findings = train, val, best, findings
        self.mark_stale()

    def show_overlay(self, series: Optional[Series], label: str = "") -> None:
        self.overlay, self.overlay_label = series, label
        self.mark_stale()

    def watch_smoothing(self) -> None:
        self.mark_stale()

    def watch_log_scale(self) -> None:
        self.mark_stale()

    def chart(self, width: int) -> Chart:
        chart = Chart(log_y=self.log_scale)
        for series, variable, smoothed in ((self.overlay, "plot-overlay", True),
                                           (self.train, "plot-train", True),
                                           (self.val, "plot-val", False)):
            if series is not None and len(series):
                xs, ys, k = downsample(series.iters, series.values, width)
                ys = smooth(ys, self.smoothing, k) if smoothed else ys
                chart.curves.append(Curve(xs, ys, self.style_of(variable)))
        if self.best is not None and chart.curves:
            chart.markers.append((*self.best, "◆", self.style_of("plot-best")))
        if chart.curves:
            # Drawn after the best: a problem at the same cell matters more than the record.
            for finding in self.findings:
                if finding.iter is None:
                    continue
                y = loss_at(self.train, finding.iter)
                if y is None:
                    y = loss_at(self.val, finding.iter)
                if y is not None:
                    variable = SEVERITY_VARIABLE.get(finding.severity, "warning")
                    chart.markers.append((finding.iter, y, FINDING_MARK, self.style_of(variable)))
        return chart


class LearningRatePlot(StalePlot):
    """The learning rate on its own axis: its scale has nothing in common with the loss."""

    max_redraw_interval_s = 1.0  # a schedule moves slowly; the loss plot needs the frames more

    def redraw_interval_s(self) -> float:
        return self.max_redraw_interval_s  # however cheap its drawing: see above

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lr = Series()

    def show(self, lr: Series) -> None:
        self.lr = lr
        self.mark_stale()

    def chart(self, width: int) -> Chart:
        chart = Chart(title="learning rate")
        if len(self.lr):
            xs, ys, _ = downsample(self.lr.iters, self.lr.values, width)
            chart.curves.append(Curve(xs, ys, self.style_of("plot-lr")))
        return chart
