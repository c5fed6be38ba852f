"""How often the clock alone changes a status line's text: the Training pane looks each second
but repaints only when the text changed (Figures.show), so a long run must show text that
changes about once a minute, and a short one each second."""

from __future__ import annotations

from tunedeck.core.status_text import RunFigures, status_figures

START = 1_800_000_000.0  # epoch seconds, on a minute


def changes(elapsed: float, left: float, seconds: int) -> int:
    """Changes of the text over ``seconds`` of looks a second apart, for a run ``elapsed`` in
    with ``left`` to go (its finish time shown)."""
    now, ends_at = START + elapsed, START + elapsed + left
    shown, changed = None, 0
    for k in range(seconds + 1):
        t = now + k
        text = status_figures(RunFigures(state="running", elapsed_s=t - START,
                                         eta_s=max(0.0, ends_at - t), finish_at=ends_at), t)
        changed += shown is not None and text != shown
        shown = text
    return changed


def test_beyond_an_hour_the_line_changes_about_once_a_minute():
    # Elapsed, ETA and finish time each to the minute: ten minutes, a change or two a minute.
    assert 10 <= changes(2 * 3600 + 17.0, 3 * 3600 + 5.0, 600) <= 20


def test_under_an_hour_the_line_changes_each_second():
    assert changes(61.2, 300.7, 60) == 60
