"""The loss plot: bounded work however long the run, smoothing, log scale, best val marked."""

import math
import time

from textual.app import App, ComposeResult

from tunedeck.themes import THEMES
from tunedeck.tui.loss_plot import LearningRatePlot, LossPlot, downsample, smooth
from tunedeck.tui.run_history import Series

from .harness import wait_until


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


async def test_a_hundred_thousand_points_draw_quickly():
    app = PlotApp()
    async with app.run_test(size=(160, 30)) as pilot:
        plot = app.query_one(LossPlot)
        train, val = _long_run(100_000)
        plot.show(train, val, best=(100_000, 0.6))
        await pilot.pause()
        started = time.perf_counter()
        plot.redraw()
        # Generous for a loaded CI machine; bench/bench_tui.py measures the real figure.
        assert time.perf_counter() - started < 0.3
        assert len(plot.lines) == 30
        text = plot.text()
        assert "◆" in text  # the best val point is marked
        assert "100000" in text  # the x axis reaches the last iteration


async def test_log_scale_and_smoothing_redraw_the_plot():
    app = PlotApp()
    async with app.run_test(size=(100, 24)) as pilot:
        plot = app.query_one(LossPlot)
        train, val = _long_run(2_000)
        plot.show(train, val, best=None)
        linear = await drawn(pilot, plot)
        plot.log_scale = True
        logged = await drawn(pilot, plot, linear)
        plot.smoothing = 0.9
        await drawn(pilot, plot, logged)


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
