"""Run health: the fine-tuning guides' troubleshooting table, applied to a run's event stream.

``HealthMonitor.observe(event)`` takes the events of core.events one at a time (live from the
runner's training callback, or read back from a metrics.jsonl or a parsed log) and returns the new
``Health`` findings. A finding is reported once per issue: again only when its severity changes,
or after it has cleared and comes back. ``check_events`` runs a monitor over a whole event list.

The issues, each measured on the train reports (``Train``) and validations (``Val``) seen so far;
every threshold named here is a field of ``HealthSettings``:

``diverging`` (bad, except a single spike: warn)
    * a train or val loss that is NaN or infinite;
    * a spike: a train loss more than ``spike_factor`` times the median of the previous
      ``spike_window`` train losses, and at least ``spike_min`` nats above it (the floor keeps a
      loss of 0.01 going to 0.04 from counting);
    * back to a uniform guess: the last ``uniform_reports`` train losses are all at or above
      (1 − ``uniform_tolerance``) · ln(vocab_size), the loss of a model that gives every token of
      the vocabulary the same probability, while an earlier train loss had been at or below
      (1 − ``uniform_margin``) · ln(vocab_size). This is how divergence usually looks with Adam and
      LoRA: no NaN and no spike, the loss falls, then climbs back to ln(vocab) and sits there.
      Needs the vocabulary size (the width of the model's output layer); without it this check
      is off. A run that starts near ln(vocab) and only falls never matches: it must have learned
      something first.
``not_learning`` (warn)
    At least ``not_learning_window`` + 1 train reports, and the lowest train loss of the last
    ``not_learning_window`` reports is not below (1 − ``not_learning_min_drop``) times the lowest
    one before them, and no train loss so far is below (1 − ``not_learning_converged``) times the
    first report's: a loss that has fallen that far and then levels off has converged, which is
    not a problem.
``overfitting`` (warn; bad once val is ``overfit_val_rise_bad`` above its best of the run)
    The guides' rule over the last ``overfit_window`` reports of each: V = the last validations,
    T = the last train reports up to the newest validation. Val rises: V[-1] ≥ (1 +
    ``overfit_val_rise``) · min(V); train falls: T[-1] < (1 − ``overfit_train_fall``) · T[0].
``val_noisy`` (warn)
    Over the last ``val_noise_window`` validations, the steps d = V[k] − V[k−1] zigzag: the
    direction reverses at ``val_noise_window`` − 3 or more of the steps, the median |d| is at least
    ``val_noise_min`` nats, and at least ``val_noise_ratio`` times the net change V[-1] − V[0]
    of the window. The val loss jumps up and down by more than it moves: too few ``val_batches``
    for its trend to show. (A loss that falls and climbs back, a V, reverses once: not noise.)
``slow_down`` (warn; bad below ``slow_drop_bad``)
    Speed is it/s, or tokens/s when a log has no it/s (mlx-lm 0.32). The reference is the median
    of train reports 2 … ``slow_window`` + 1 (the first is skipped: it includes compilation);
    every one of the last ``slow_window`` reports, all after the reference, is below
    (1 − ``slow_drop``) times the reference. "Every one" so that a noisy report on a shared
    machine does not count; a run that swaps stays slow. Needs 2 · ``slow_window`` + 1 reports.

``not_learning`` and ``overfitting`` are not reported while ``diverging`` is: a diverged run's
flat loss and risen val loss are that finding's symptoms, and its advice is the one to follow.

Findings carry the iteration of the event that raised them.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import statistics
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Collection, Iterable, List, Optional, Union

from .events import Event, Health, Resume, Save, Train, Val

DIVERGING, NOT_LEARNING, OVERFITTING, VAL_NOISY, SLOW_DOWN = (
    "diverging", "not_learning", "overfitting", "val_noisy", "slow_down")
ISSUES = (DIVERGING, NOT_LEARNING, OVERFITTING, VAL_NOISY, SLOW_DOWN)
WARN, BAD = "warn", "bad"


@dataclass
class HealthSettings:
    """The thresholds of the definitions in this module's docstring."""

    spike_factor: float = 3.0
    spike_window: int = 5
    spike_min: float = 0.5
    uniform_tolerance: float = 0.03
    uniform_margin: float = 0.06
    uniform_reports: int = 2
    not_learning_window: int = 10
    not_learning_min_drop: float = 0.01
    not_learning_converged: float = 0.5
    overfit_window: int = 5
    overfit_val_rise: float = 0.02
    overfit_val_rise_bad: float = 0.10
    overfit_train_fall: float = 0.0
    val_noise_window: int = 6
    val_noise_ratio: float = 1.0
    val_noise_min: float = 0.02
    slow_window: int = 10
    slow_drop: float = 0.5
    slow_drop_bad: float = 0.75

    @classmethod
    def from_dict(cls, values: dict) -> "HealthSettings":
        """Settings from a config table; unknown names are refused so a typo is not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown health setting {unknown[0]!r} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**values)


def model_vocab_size(model_dir: Union[str, Path]) -> Optional[int]:
    """The width of a model's output layer, from its config.json (None when it does not say)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for table in (config, config.get("text_config") or {}):
        if isinstance(table.get("vocab_size"), int):
            return table["vocab_size"]
    return None


def _num(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3g}" if abs(x) < 0.01 else f"{x:.3f}" if abs(x) < 100 else f"{x:,.0f}"


def _iters(points) -> str:
    return ", ".join(str(i) for i, _ in points)


class HealthMonitor:
    """Findings on one run's event stream; feed it every event in order."""

    def __init__(self, settings: Optional[HealthSettings] = None, vocab_size: Optional[int] = None,
                 val_batches: Optional[int] = None):
        self.settings = settings or HealthSettings()
        self.use_vocab_size(vocab_size)
        self.val_batches = val_batches
        self.train: list[tuple[int, float]] = []
        # lowest[k]: the lowest finite train loss among train[:k+1] (None before the first one),
        # kept as reports come so that no check rescans a long run's history at every event.
        self.lowest: list[Optional[tuple[int, float]]] = []
        self.speed: list[tuple[int, float, Optional[float]]] = []  # iter, speed, peak memory
        self.speed_unit = "it/s"
        self.val: list[tuple[int, float]] = []
        self.val_best = math.inf
        self.saves: list[int] = []
        self.lr: Optional[float] = None
        self.active: dict[str, str] = {}  # issue → severity last reported

    def use_vocab_size(self, vocab_size: Optional[int]) -> None:
        """The vocabulary, once known (a log names its model only in its header)."""
        self.uniform_loss = math.log(vocab_size) if vocab_size and vocab_size > 1 else None
        self.vocab_size = vocab_size

    # -- the stream ---------------------------------------------------------------------------
    def observe(self, event: Event) -> List[Health]:
        """The findings ``event`` raises or changes (usually none)."""
        if isinstance(event, Train):
            self._add_train(event.iter, float(event.loss))
            if event.lr is not None:
                self.lr = event.lr
            self._note_speed(event)
        elif isinstance(event, Val):
            self.val.append((event.iter, float(event.loss)))
            if math.isfinite(event.loss):
                self.val_best = min(self.val_best, float(event.loss))
        elif isinstance(event, Save):
            if event.iter is not None:
                self.saves.append(event.iter)
            return []
        elif isinstance(event, Resume):
            # Whatever was logged after the resumed checkpoint no longer leads to these weights.
            cut = event.iter or 0
            kept = [p for p in self.train if p[0] <= cut]
            self.train, self.lowest = [], []
            for point in kept:
                self._add_train(*point)
            self.val = [p for p in self.val if p[0] <= cut]
            self.val_best = min((v for _, v in self.val if math.isfinite(v)), default=math.inf)
            self.speed = []
            self.saves = [s for s in self.saves if s <= cut]
            self.active.clear()
            return []
        else:
            return []
        return self._update(event.iter, self._assess())

    def _add_train(self, iteration: int, loss: float) -> None:
        self.train.append((iteration, loss))
        low = self.lowest[-1] if self.lowest else None
        if math.isfinite(loss) and (low is None or loss < low[1]):
            low = (iteration, loss)
        self.lowest.append(low)

    def _lowest_before(self, last: int) -> Optional[tuple[int, float]]:
        """The lowest finite train loss before the last ``last`` reports."""
        return self.lowest[-last - 1] if len(self.lowest) > last else None

    def _first_finite(self) -> Optional[float]:
        low = next((p for p in self.lowest if p is not None), None)
        return low[1] if low else None

    def _note_speed(self, event: Train) -> None:
        if event.it_per_sec is not None:
            value, unit = event.it_per_sec, "it/s"
        elif event.tokens_per_sec is not None:
            value, unit = event.tokens_per_sec, "tokens/s"
        else:
            return
        if self.speed and unit != self.speed_unit:
            self.speed = []  # a log that changes what it reports: compare like with like
        self.speed_unit = unit
        self.speed.append((event.iter, float(value), event.peak_mem_gb))

    def _update(self, iteration: int, now: dict) -> List[Health]:
        found = []
        for issue in ISSUES:
            finding = now.get(issue)
            if finding is None:
                self.active.pop(issue, None)
                continue
            severity, evidence, advice = finding
            if self.active.get(issue) != severity:
                self.active[issue] = severity
                found.append(Health(iter=iteration, issue=issue, severity=severity,
                                    evidence=evidence, advice=advice))
        return found

    def _assess(self) -> dict:
        now = {}
        checks = [(VAL_NOISY, self._val_noisy), (SLOW_DOWN, self._slow_down)]
        diverging = self._diverging()
        if diverging:
            now[DIVERGING] = diverging
        else:
            checks += [(NOT_LEARNING, self._not_learning), (OVERFITTING, self._overfitting)]
        for issue, check in checks:
            finding = check()
            if finding:
                now[issue] = finding
        return now

    # -- what to do about it ------------------------------------------------------------------
    def last_healthy_checkpoint(self, among: Optional[Collection[int]] = None) -> Optional[int]:
        """The newest checkpoint saved at or before the lowest finite train loss so far (only
        those ``among`` counts, e.g. the resumable ones, when given)."""
        low = self._lowest_before(0)
        if low is None:
            return None
        saves = self.saves if among is None else [s for s in self.saves if s in among]
        k = bisect.bisect_right(saves, low[0])
        return saves[k - 1] if k else None

    def suggested_resume(self) -> Optional[tuple]:
        """While ``diverging`` stands: (the last healthy checkpoint, half the learning rate), the
        resume the app offers after a confirm; None when there is nothing to offer."""
        checkpoint = self.last_healthy_checkpoint()
        if DIVERGING not in self.active or checkpoint is None or not self.lr:
            return None
        return checkpoint, self.lr / 2

    def _lower_rate_advice(self) -> str:
        lr = f"learning_rate {self.lr:g} → {self.lr / 2:g}" if self.lr else "a lower learning_rate"
        checkpoint = self.last_healthy_checkpoint()
        where = (f"resume from checkpoint {checkpoint} (the last one before the loss went wrong)"
                 if checkpoint is not None else "start again")
        return f"the learning rate is too high: {where} with {lr}; also check the data format"

    # -- the checks, as defined in the module docstring ---------------------------------------
    def _diverging(self):
        s = self.settings
        for what, series in (("train", self.train), ("val", self.val)):
            if series and not math.isfinite(series[-1][1]):
                i, loss = series[-1]
                return BAD, f"{what} loss is {loss} at iteration {i}", self._lower_rate_advice()
        if self.uniform_loss is not None and len(self.train) > s.uniform_reports:
            u = self.uniform_loss
            recent = self.train[-s.uniform_reports:]
            earlier = self._lowest_before(s.uniform_reports)
            if earlier and all(loss >= (1 - s.uniform_tolerance) * u for _, loss in recent):
                best_i, best = earlier
                if best <= (1 - s.uniform_margin) * u:
                    losses = ", ".join(_num(loss) for _, loss in recent)
                    return BAD, (f"train loss {losses} at iterations {_iters(recent)}: back at "
                                 f"ln({self.vocab_size}) = {_num(u)}, a uniform guess over the "
                                 f"vocabulary, after {_num(best)} at iteration {best_i}"), \
                        self._lower_rate_advice()
        if len(self.train) > s.spike_window:
            i, loss = self.train[-1]
            median = statistics.median(p[1] for p in self.train[-s.spike_window - 1:-1])
            if loss > s.spike_factor * median and loss - median >= s.spike_min:
                return WARN, (f"train loss {_num(loss)} at iteration {i}, {loss / median:.1f}× the "
                              f"median {_num(median)} of the {s.spike_window} reports before"), \
                    ("a spike: if it does not come back down, " + self._lower_rate_advice()
                     + " (exploding gradients: a smaller learning rate or a warmup)")
        return None

    def _not_learning(self):
        s = self.settings
        w = s.not_learning_window
        if len(self.train) <= w:
            return None
        best_before = self._lowest_before(w)
        recent = [p for p in self.train[-w:] if math.isfinite(p[1])]
        if best_before is None or not recent:
            return None
        best_recent = min(recent, key=lambda p: p[1])
        first = self._first_finite()
        if first is None:  # never, once a finite loss came before the window
            return None
        converged = min(best_before[1], best_recent[1]) < (1 - s.not_learning_converged) * first
        if not converged and best_recent[1] > (1 - s.not_learning_min_drop) * best_before[1]:
            return WARN, (f"the lowest train loss of the last {w} reports (iterations "
                          f"{self.train[-w][0]}–{self.train[-1][0]}) is {_num(best_recent[1])}; "
                          f"it was {_num(best_before[1])} at iteration {best_before[0]}, and "
                          f"{_num(first)} at the first report"), \
                ("check the data format and that the answers are what the model should learn "
                 "(tunedeck data check), raise the learning rate, or train more layers or a "
                 "higher LoRA rank")
        return None

    def _overfitting(self):
        s = self.settings
        w = s.overfit_window
        if len(self.val) < w:
            return None
        last_val_iter = self.val[-1][0]
        train = []  # the last w reports up to the newest validation, found from the end
        for point in reversed(self.train):
            if point[0] <= last_val_iter:
                train.append(point)
                if len(train) == w:
                    break
        train.reverse()
        if len(train) < w:
            return None
        vals = self.val[-w:]
        low_i, low = min(vals, key=lambda p: p[1])
        now_i, now = vals[-1]
        if not (now >= (1 + s.overfit_val_rise) * low and train[-1][1] < (1 - s.overfit_train_fall) * train[0][1]):
            return None
        best = self.val_best
        severity = BAD if now >= (1 + s.overfit_val_rise_bad) * best else WARN
        k = bisect.bisect_right(self.saves, low_i)
        keep = (f"the checkpoint at iteration {self.saves[k - 1]} is the last before val rose; "
                if k else "")
        return severity, (f"val loss {_num(low)} at iteration {low_i} → {_num(now)} at iteration "
                          f"{now_i} (+{(now / low - 1) * 100:.0f}%) while train loss fell "
                          f"{_num(train[0][1])} → {_num(train[-1][1])} over the last {w} reports"), \
            (keep + "stop earlier or train fewer epochs, add data, raise LoRA dropout or lower "
             "the rank")

    def _val_noisy(self):
        s = self.settings
        w = max(3, s.val_noise_window)
        pts = self.val[-w:]
        if len(pts) < w or not all(math.isfinite(p[1]) for p in pts):
            return None
        steps = [b[1] - a[1] for a, b in zip(pts, pts[1:])]
        reversals = sum(1 for d0, d1 in zip(steps, steps[1:]) if d0 * d1 < 0)
        jump = statistics.median(abs(d) for d in steps)
        net = abs(pts[-1][1] - pts[0][1])
        if reversals >= w - 3 and jump >= s.val_noise_min and jump >= s.val_noise_ratio * net:
            if self.val_batches is not None and self.val_batches < 0:
                advice = ("every validation already uses the whole valid split: add examples to it "
                          "so its loss shows the trend")
            else:
                now = f"val_batches is {self.val_batches}: " if self.val_batches else ""
                advice = (now + "raise val_batches (4× as many, or -1 for the whole valid split) so "
                          "each validation averages more examples; it costs time per validation")
            return WARN, (f"val loss jumps by {_num(jump)} (median) between validations and "
                          f"changes direction {reversals} times over the last {w} (iterations "
                          f"{pts[0][0]}–{pts[-1][0]}), while it moves {_num(net)} in all"), advice
        return None

    def _slow_down(self):
        s = self.settings
        w = s.slow_window
        if len(self.speed) < 1 + 2 * w:
            return None
        reference = statistics.median(p[1] for p in self.speed[1:1 + w])
        recent = self.speed[-w:]
        fastest = max(p[1] for p in recent)
        if reference <= 0 or fastest >= (1 - s.slow_drop) * reference:
            return None
        severity = BAD if fastest < (1 - s.slow_drop_bad) * reference else WARN
        memory = [p[2] for p in self.speed if p[2] is not None]
        mem = (f"; peak memory {memory[0]:.2f} → {memory[-1]:.2f} GB" if len(memory) > 1 else "")
        return severity, (f"{self.speed_unit} at most {_num(fastest)} over the last {w} reports "
                          f"(iterations {recent[0][0]}–{recent[-1][0]}), was {_num(reference)} "
                          f"early in the run{mem}"), \
            ("memory pressure or swapping: lower batch_size or max_seq_length, turn on "
             "grad_checkpoint, or close other programs using memory")


def check_events(events: Iterable[Event], vocab_size: Optional[int] = None,
                 settings: Optional[HealthSettings] = None,
                 val_batches: Optional[int] = None) -> List[Health]:
    """Every finding over a whole event list (a finished run, a foreign log). ``Health`` events
    already in the list are left out: the findings are computed afresh."""
    monitor = HealthMonitor(settings, vocab_size, val_batches)
    found: List[Health] = []
    for event in events:
        found.extend(monitor.observe(event))
    return found


@dataclass
class ResumeOffer:
    """What a ``diverging`` finding offers, after a confirm: resume from ``checkpoint`` (the last
    healthy one) with ``new_learning_rate``, half the run's ``learning_rate``."""

    checkpoint: int
    learning_rate: float
    new_learning_rate: float
    finding: Health


class DivergingOffer:
    """Follows a run's record, the findings the runner wrote included, for the resume a
    ``diverging`` finding offers. Fed every event in order (live or from metrics.jsonl), like
    the monitor; ``offer`` is None while there is nothing to offer:

    * no ``diverging`` finding since the run last resumed (a resume from an earlier checkpoint
      starts from weights before it);
    * no resumable checkpoint saved at or before the lowest train loss (then: start again);
    * no learning rate in the reports, or one that changed between them: a schedule (warmup,
      cosine) is not a single rate to halve.
    """

    def __init__(self) -> None:
        self.monitor = HealthMonitor()  # for the saves, the lowest loss and the rate only
        self.finding: Optional[Health] = None
        self.rates: set = set()

    def observe(self, event: Event) -> None:
        if isinstance(event, Health):
            if event.issue == DIVERGING:
                self.finding = event
            return
        if isinstance(event, Resume):
            cut = event.iter or 0
            if self.finding is not None and (self.finding.iter or 0) > cut:
                self.finding = None
            self.rates = set()  # a resume may have changed the rate: compare from here on
        elif isinstance(event, Train) and event.lr is not None:
            self.rates.add(float(event.lr))
        self.monitor.observe(event)

    def offer(self, resumable: Collection[int]) -> Optional[ResumeOffer]:
        """The offer, given the iterations of the run's resumable checkpoints."""
        if self.finding is None or len(self.rates) != 1:
            return None
        checkpoint = self.monitor.last_healthy_checkpoint(among=set(resumable))
        if checkpoint is None:
            return None
        rate = next(iter(self.rates))
        return ResumeOffer(checkpoint, rate, rate / 2, self.finding)


# mlx-lm 0.32's run header, ANSI codes stripped: "│    model           /path/to/model     │".
_HEADER_MODEL = re.compile(r"^\W*model\s{2,}(\S.*?)\s*[│|]?\s*$")


class LogHealth:
    """The monitor for a plain mlx-lm log (no run directory, no config): the vocabulary comes
    from the model directory the log's header names, when that directory is on this machine;
    without it the uniform-guess check is off, the others work. Feed it the log's lines and the
    events parsed from them, in order; ``observe`` returns the events with the findings each
    raises right after it."""

    def __init__(self, settings: Optional[HealthSettings] = None):
        self.monitor = HealthMonitor(settings)
        self._header = True  # the header is over once training reports come

    def read_lines(self, lines: Iterable[str]) -> None:
        if not self._header:
            return
        from .logparse import strip_ansi

        for line in lines:
            m = _HEADER_MODEL.match(strip_ansi(line))
            if m and self.monitor.vocab_size is None:
                self.monitor.use_vocab_size(model_vocab_size(Path(m.group(1)).expanduser()))

    def observe(self, events: Iterable[Event]) -> List[Event]:
        out: List[Event] = []
        for event in events:
            if isinstance(event, Health):
                continue  # a tunedeck train.log's own findings are found again here, not twice
            if isinstance(event, Train):
                self._header = False
            out.append(event)
            out.extend(self.monitor.observe(event))
        return out
