"""Time left for the followed run, from core's estimator, counted down between events."""

from __future__ import annotations

from typing import Optional

from .run_history import RunHistory


def estimate_eta(history: RunHistory, now: float) -> Optional[float]:
    try:
        from tunedeck.core.eta import estimate_from_events
    except ImportError:  # TEMPORARY until core.eta lands
        return None

    if not history.total_iters or not history.events:
        return None
    eta = estimate_from_events(history.events, history.total_iters)
    if eta is None:
        return None
    # The estimate holds at the last event; the clock has run since.
    since = now - history.last_arrival if history.last_arrival is not None else 0.0
    return max(0.0, eta - since)
