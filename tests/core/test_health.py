"""The health monitor on synthetic event streams, at each definition's threshold.

Each pair of tests sits just below a threshold (no finding) and just above it (the finding), with
the default settings, so a changed definition or default shows up here.
"""

from __future__ import annotations

import math

import pytest

from tunedeck.core.events import Resume, Save, Train, Val
from tunedeck.core.health import HealthMonitor, HealthSettings, check_events, model_vocab_size

S = HealthSettings()


def trains(losses, start=5, step=5, **fields):
    return [Train(iter=start + k * step, loss=loss, **fields) for k, loss in enumerate(losses)]


def vals(losses, start=10, step=10):
    return [Val(iter=start + k * step, loss=loss) for k, loss in enumerate(losses)]


def issues(events, **kwargs):
    return [(h.issue, h.severity) for h in check_events(events, **kwargs)]


def interleave(train_events, val_events):
    """Train and val events in iteration order (a val at iteration i comes before i's report)."""
    return sorted(train_events + val_events, key=lambda e: (e.iter, isinstance(e, Train)))


# -- diverging -----------------------------------------------------------------------------------

def test_a_nan_or_infinite_loss_is_diverging_at_once():
    for bad in (math.nan, math.inf):
        found = check_events(trains([3.0, 2.5, bad]))
        assert [(h.issue, h.severity, h.iter) for h in found] == [("diverging", "bad", 15)]
    assert issues(trains([3.0, 2.5]) + [Val(iter=10, loss=math.nan)]) == [("diverging", "bad")]


def test_a_spike_above_the_factor_times_the_recent_median_is_diverging():
    steady = [2.0, 2.1, 1.9, 2.0, 2.0]  # median 2.0
    factor = S.spike_factor
    assert issues(trains(steady + [factor * 2.0 - 0.01])) == []
    assert issues(trains(steady + [factor * 2.0 + 0.01])) == [("diverging", "warn")]


def test_a_spike_of_a_tiny_loss_below_the_absolute_floor_is_not_diverging():
    # 0.01 → 0.2 is twenty times the median but only 0.19 nats: noise near zero loss.
    assert issues(trains([0.01] * 5 + [0.2])) == []


def test_climbing_back_to_a_uniform_guess_and_staying_is_diverging():
    vocab = 400
    u = math.log(vocab)
    near = (1 - S.uniform_tolerance) * u
    learned = (1 - S.uniform_margin) * u
    # Fell to just under the margin, then two reports at the uniform level.
    assert issues(trains([u, learned - 0.01, near + 0.01, near + 0.01]), vocab_size=vocab) == [
        ("diverging", "bad")]
    # Only one report there so far: not yet "staying there".
    assert issues(trains([u, learned - 0.01, near + 0.01]), vocab_size=vocab) == []
    # Just under the uniform level: not there.
    assert issues(trains([u, learned - 0.01, near - 0.01, near - 0.01]), vocab_size=vocab) == []
    # Never learned enough to count as climbing back (a run that starts at ln(vocab) and sits).
    assert issues(trains([u, learned + 0.01, near + 0.01, near + 0.01]), vocab_size=vocab) == []
    # Without the vocabulary size the check is off.
    assert issues(trains([u, learned - 0.01, near + 0.01, near + 0.01])) == []


def test_diverging_advice_names_the_last_checkpoint_before_the_loss_went_wrong_and_half_the_rate():
    u = math.log(400)
    events = [Train(iter=5, loss=5.8, lr=1.0), Train(iter=10, loss=5.2, lr=1.0), Save(iter=10, file="x"),
              Train(iter=15, loss=u, lr=1.0), Train(iter=20, loss=u, lr=1.0), Save(iter=20, file="y")]
    monitor = HealthMonitor(vocab_size=400)
    found = [h for e in events for h in monitor.observe(e)]
    assert len(found) == 1 and found[0].iter == 20
    assert "checkpoint 10" in found[0].advice and "1 → 0.5" in found[0].advice
    assert "ln(400)" in found[0].evidence
    assert monitor.last_healthy_checkpoint() == 10
    assert monitor.suggested_resume() == (10, 0.5)
    monitor.observe(Train(iter=25, loss=5.0, lr=1.0))  # it recovered: nothing to offer
    assert monitor.suggested_resume() is None


# -- not_learning --------------------------------------------------------------------------------

def test_no_improvement_over_the_window_is_not_learning():
    w = S.not_learning_window
    best = 2.0
    just_enough = best * (1 - S.not_learning_min_drop) - 0.001
    not_enough = best * (1 - S.not_learning_min_drop) + 0.001
    assert issues(trains([best] + [not_enough] * w)) == [("not_learning", "warn")]
    assert issues(trains([best] + [2.5] * (w - 1) + [just_enough])) == []
    # One report fewer than the window needs: no verdict yet.
    assert issues(trains([best] + [not_enough] * (w - 1))) == []


def test_a_loss_that_fell_by_half_and_levelled_off_has_converged_and_is_not_flagged():
    w = S.not_learning_window
    first = 4.0
    half = first * (1 - S.not_learning_converged)
    assert issues(trains([first, half - 0.01] + [half - 0.01] * w)) == []
    assert issues(trains([first, half + 0.01] + [half + 0.01] * w)) == [("not_learning", "warn")]


# -- overfitting ---------------------------------------------------------------------------------

def _overfit_stream(val_rise, train_fall=True):
    w = S.overfit_window
    low = 2.0
    val = [2.2, 2.1, low] + [low] * (w - 3)
    val[-1] = low * (1 + val_rise)
    train = [2.0 - 0.1 * k if train_fall else 2.0 for k in range(w)]
    return interleave(trains(train, start=10, step=10), vals(val))


def test_val_rising_while_train_falls_over_the_last_five_reports_is_overfitting():
    rise = S.overfit_val_rise
    assert issues(_overfit_stream(rise + 0.002)) == [("overfitting", "warn")]
    assert issues(_overfit_stream(rise - 0.002)) == []
    # Val rises but train does not fall: not the guides' rule.
    assert issues(_overfit_stream(rise + 0.002, train_fall=False)) == []


def test_overfitting_is_bad_once_val_is_well_above_its_best():
    assert issues(_overfit_stream(S.overfit_val_rise_bad + 0.01)) == [("overfitting", "bad")]


def test_a_finding_is_reported_once_and_again_when_its_severity_changes():
    low = 2.0
    val = [2.2, 2.1, low, low * 1.03, low * 1.04, low * 1.05, low * 1.2, low * 1.25]
    train = [2.0 - 0.1 * k for k in range(len(val))]
    found = check_events(interleave(trains(train, start=10, step=10), vals(val)))
    # The fifth validation (iteration 50) is the first the rule can judge.
    assert [(h.issue, h.severity, h.iter) for h in found] == [
        ("overfitting", "warn", 50), ("overfitting", "bad", 70)]


def test_a_finding_that_clears_and_comes_back_is_reported_again():
    monitor = HealthMonitor()
    steady = trains([2.0, 2.1, 1.9, 2.0, 2.0])
    for e in steady:
        assert monitor.observe(e) == []
    assert [h.issue for h in monitor.observe(Train(iter=30, loss=7.0))] == ["diverging"]
    assert monitor.observe(Train(iter=35, loss=2.0)) == []  # cleared
    assert monitor.observe(Train(iter=40, loss=2.0)) == []
    assert [h.issue for h in monitor.observe(Train(iter=45, loss=9.0))] == ["diverging"]


def test_a_resume_from_an_earlier_checkpoint_forgets_what_came_after_it():
    u = math.log(400)
    diverged = trains([5.8, 5.2, u, u])
    monitor = HealthMonitor(vocab_size=400)
    assert [h.issue for e in diverged for h in monitor.observe(e)] == ["diverging"]
    monitor.observe(Resume(iter=10, source="0000010_adapters.safetensors"))
    assert monitor.observe(Train(iter=15, loss=5.0)) == []
    assert [h.issue for h in monitor.observe(Train(iter=20, loss=u))] == []  # one report: not yet


# -- val_noisy -----------------------------------------------------------------------------------

def _zigzag(amplitude, n=S.val_noise_window):
    return vals([2.0 + (amplitude if k % 2 else 0.0) for k in range(n)])


def test_val_loss_that_zigzags_by_more_than_it_moves_is_noisy():
    found = check_events(_zigzag(S.val_noise_min + 0.001), val_batches=2)
    assert [(h.issue, h.severity) for h in found] == [("val_noisy", "warn")]
    assert "val_batches is 2" in found[0].advice
    assert issues(_zigzag(S.val_noise_min - 0.001)) == []


def test_a_falling_val_loss_with_small_wobbles_is_not_noisy():
    # Jumps of 0.05 both ways, but the loss falls 0.5 over the window: the trend shows.
    wobbly = [2.5, 2.45, 2.3, 2.25, 2.1, 2.0]
    assert issues(vals(wobbly)) == []


def test_a_val_loss_that_falls_and_climbs_back_is_not_noise():
    assert issues(vals([6.0, 5.4, 6.0, 6.0, 6.0, 6.0])) == []


# -- slow_down -----------------------------------------------------------------------------------

def _speeds(late, w=S.slow_window):
    # The first report includes compilation and is ignored.
    return [0.5] + [10.0] * w + [late] * w


def _speed_stream(speeds, **fields):
    return [Train(iter=5 * (k + 1), loss=2.0 - 0.01 * k, it_per_sec=s, **fields)
            for k, s in enumerate(speeds)]


def test_every_recent_report_below_half_the_early_speed_is_slow_down():
    threshold = (1 - S.slow_drop) * 10.0
    assert issues(_speed_stream(_speeds(threshold - 0.01))) == [("slow_down", "warn")]
    assert issues(_speed_stream(_speeds(threshold + 0.01))) == []
    bad = (1 - S.slow_drop_bad) * 10.0
    assert issues(_speed_stream(_speeds(bad - 0.01))) == [("slow_down", "bad")]


def test_one_fast_report_among_the_recent_ones_is_not_slow_down():
    speeds = _speeds(3.0)
    speeds[-2] = 9.0  # the machine was busy, not the run swapping
    assert issues(_speed_stream(speeds)) == []


def test_slow_down_uses_tokens_per_second_when_a_log_has_no_iterations_per_second():
    events = [Train(iter=5 * (k + 1), loss=2.0 - 0.01 * k, tokens_per_sec=s * 100)
              for k, s in enumerate(_speeds(2.0))]
    found = check_events(events)
    assert [h.issue for h in found] == ["slow_down"] and "tokens/s" in found[0].evidence


# -- settings and helpers ------------------------------------------------------------------------

def test_thresholds_are_settings():
    stream = _overfit_stream(S.overfit_val_rise + 0.002)
    assert issues(stream, settings=HealthSettings(overfit_val_rise=0.05)) == []
    with pytest.raises(ValueError, match="overfit_val_raise"):
        HealthSettings.from_dict({"overfit_val_raise": 0.1})


def test_the_vocabulary_size_comes_from_the_model_config(tiny_model, tmp_path):
    assert model_vocab_size(tiny_model) == 400
    assert model_vocab_size(tmp_path) is None
