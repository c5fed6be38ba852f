"""The loss plot: bounded work however long the run, smoothing, log scale, best val marked."""

import math

import pytest

from textual.app import App, ComposeResult

from tunedeck.themes import THEMES
from tunedeck.tui.panes.training.loss_plot import LearningRatePlot, LossPlot, downsample, smooth
from tunedeck.core.run_history import Series

from .harness import PaneHarness, wait_until


def test_downsample_keeps_at_most_one_point_per_column_and_the_last_iteration():
    iters = list(range(1, 100_001))
    values = [1.0] * 100_000
    xs, ys, per_point = downsample(iters, values, 150)
    assert len(xs) <= 150
    assert xs[-1] == 100_000
    assert per_point == math.ceil(100_000 / 150)
    assert all(y == 1.0 for y in ys)


def test_short_series_are_not_touched():
    assert downsample([1, 2, 3], [3.0, 2.0, 1.0], 150) == ([1, 2, 3], [3.0, 2.0, 1.0], 1)


def test_smoothing_follows_a_constant_and_damps_noise():
    assert smooth([2.0] * 10, 0.9) == [2.0] * 10
    noisy = [1.0 if i % 2 else 3.0 for i in range(200)]
    smoothed = smooth(noisy, 0.9)
    assert max(smoothed[100:]) - min(smoothed[100:]) < 0.25
    assert smooth(noisy, 0.0) == noisy


class PlotApp(App):
    def __init__(self):
        super().__init__()
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = THEMES[0].name

    def compose(self) -> ComposeResult:
        yield LossPlot()


def _long_run(n: int) -> tuple[Series, Series]:
    train, val = Series(), Series()
    for i in range(1, n + 1):
        train.add(i, 3 * math.exp(-i / (n / 5)) + 0.5)
        if i % 1000 == 0:
            val.add(i, 3 * math.exp(-i / (n / 5)) + 0.6)
    return train, val


async def drawn(pilot, plot, before: str = "") -> str:
    """The plot's text once a drawing different from ``before`` has landed."""
    await wait_until(pilot, lambda: plot.settled and plot.text() != before, what="the drawing")
    return plot.text()


async def show_long_run(pilot, n: int) -> tuple[LossPlot, str]:
    """A run of ``n`` iterations on the plot, its best val at the end; the plot and its text."""
    plot = pilot.app.query_one(LossPlot)
    train, val = _long_run(n)
    plot.show(train, val, best=(n, 0.6))
    return plot, await drawn(pilot, plot)


async def test_a_hundred_thousand_points_draw_from_one_point_per_column():
    app = PlotApp()
    async with app.run_test(size=(160, 30)) as pilot:
        plot, text = await show_long_run(pilot, 100_000)
        # The work is bounded by the width, not the run's length (bench/bench_tui.py times it).
        assert all(len(curve.xs) <= 160 for curve in plot.chart(160).curves)
        assert len(plot.lines) == 30
        assert "◆" in text  # the best val point is marked
        assert "100000" in text  # the x axis reaches the last iteration


def y_labels(text: str) -> list[float]:
    """The y axis's tick labels, top to bottom."""
    return [float(line.split("┤")[0]) for line in text.splitlines() if "┤" in line]


async def test_log_scale_spaces_the_y_ticks_by_ratio_not_by_difference():
    app = PlotApp()
    async with app.run_test(size=(100, 24)) as pilot:
        plot = app.query_one(LossPlot)
        train, val = _long_run(2_000)
        plot.show(train, val, best=None)
        linear = y_labels(await drawn(pilot, plot))
        plot.log_scale = True
        logged = y_labels(await drawn(pilot, plot, "\n".join(map(str, linear))))
    assert len(linear) >= 3 and len(logged) >= 3
    steps = [a - b for a, b in zip(linear, linear[1:])]
    assert max(steps) - min(steps) <= 0.02 * max(steps) + 0.01  # even differences (labels round)
    ratios = [a / b for a, b in zip(logged, logged[1:])]
    assert max(ratios) - min(ratios) <= 0.05 * max(ratios)  # even ratios
    assert ratios[0] > 1.2  # not linear ticks that happen to be close


async def test_smoothing_draws_the_smoothed_train_curve_and_leaves_val_alone():
    app = PlotApp()
    async with app.run_test(size=(100, 24)) as pilot:
        plot = app.query_one(LossPlot)
        train, val = Series(), Series()
        for i in range(1, 81):  # fewer points than columns: no downsampling in the way
            train.add(i, 1.0 if i % 2 else 3.0)
            if i % 10 == 0:
                val.add(i, 1.0 if i % 20 else 3.0)
        plot.show(train, val, best=None)
        await drawn(pilot, plot)
        plot.smoothing = 0.9
        await pilot.pause()
        raw_train, raw_val = plot.chart(100).curves
        assert raw_train.ys == pytest.approx(smooth(train.values, 0.9))
        assert max(raw_train.ys[40:]) - min(raw_train.ys[40:]) < 0.5  # the zigzag is damped
        assert raw_val.ys == val.values


async def test_the_learning_rate_has_its_own_plot_and_scale():
    class LrApp(PlotApp):
        def compose(self) -> ComposeResult:
            yield LearningRatePlot()

    app = LrApp()
    async with app.run_test(size=(80, 10)) as pilot:
        plot = app.query_one(LearningRatePlot)
        lr = Series()
        for i in range(1, 101):
            lr.add(i, 1e-3 * min(1.0, i / 20))
        plot.show(lr)
        text = await drawn(pilot, plot)
        assert "learning rate" in text
        assert "0.001" in text and "100" in text


async def test_a_plot_with_data_before_plotext_is_imported_is_drawn_once_it_is(monkeypatch):
    from tunedeck.tui.widgets import line_chart
    from tunedeck.tui.panes.training import loss_plot

    fresh = line_chart._Library()  # as in a new process: plotext not imported by tunedeck yet
    monkeypatch.setattr(line_chart, "PLOTEXT", fresh)
    monkeypatch.setattr(loss_plot, "PLOTEXT", fresh)
    app = PlotApp()
    async with app.run_test(size=(100, 24)) as pilot:
        _, text = await show_long_run(pilot, 2_000)
        assert fresh.module is not None
        assert "◆" in text and "2000" in text


class _NeverLoaded:
    """plotext as it is during its import (seconds on a busy machine)."""

    module = None
    failed = False

    def ready(self, when_ready) -> bool:
        return False


async def test_a_plot_waiting_for_plotext_says_it_draws_not_that_no_report_came(monkeypatch):
    # A finished run opened at 80x24 said "waiting for the first report" for seconds.
    from tunedeck.tui.widgets import line_chart
    from tunedeck.tui.panes.training import loss_plot

    monkeypatch.setattr(line_chart, "PLOTEXT", _NeverLoaded())
    monkeypatch.setattr(loss_plot, "PLOTEXT", line_chart.PLOTEXT)
    app = PlotApp()
    async with app.run_test(size=(80, 24)) as pilot:
        plot = app.query_one(LossPlot)
        train, val = _long_run(2_000)
        plot.show(train, val, None)
        await wait_until(pilot, lambda: "drawing the chart" in plot.text(), what="the drawing's note")
        assert "waiting for the first report" not in plot.text()


async def test_following_a_run_imports_plotext_before_a_report_asks_for_it(monkeypatch):
    # The reports that came during the import waited for it: the long tail of report → plot.
    from tunedeck.tui.widgets import line_chart
    from tunedeck.tui.panes.training import loss_plot
    from tunedeck.tui.panes.training.pane import TrainingPane

    fresh = line_chart._Library()
    monkeypatch.setattr(line_chart, "PLOTEXT", fresh)
    monkeypatch.setattr(loss_plot, "PLOTEXT", fresh)

    app = PaneHarness(lambda: TrainingPane(), clock=lambda: 0.0)
    async with app.run_test(size=(100, 30)) as pilot:
        app.query_one(TrainingPane).follow("run", "starting")
        await wait_until(pilot, lambda: fresh.module is not None, what="plotext imported")
        assert not app.query_one(LossPlot).train.iters  # no report asked for it


@pytest.mark.parametrize("drawing_cpu_s, most_wait_s", [(0.005, 0.02), (0.2, 0.1)])
async def test_the_wait_for_the_next_drawing_follows_what_the_last_one_cost(monkeypatch, drawing_cpu_s,
                                                                           most_wait_s):
    # A fixed 0.1 s between drawings held a cheap drawing (a few hundred points) back: a run
    # reporting every 40 ms had its report on the plot 50 ms late on average. A costly drawing
    # still waits at most the fixed interval.
    from tunedeck.tui.panes.training import loss_plot

    app = PlotApp()
    async with app.run_test(size=(100, 24)) as pilot:
        plot, _ = await show_long_run(pilot, 300)
        clock = iter([100.0, 100.0 + drawing_cpu_s])
        monkeypatch.setattr(loss_plot.time, "thread_time", lambda: next(clock))
        plot.redraw()  # a drawing that cost drawing_cpu_s of the UI thread
        monkeypatch.undo()
        waits = []
        monkeypatch.setattr(plot, "set_timer", lambda wait, callback: waits.append(wait))
        plot.show_overlay(Series())  # new data, right after the drawing
        assert len(waits) == 1
        assert most_wait_s * 0.5 < waits[0] <= most_wait_s
