"""The Training pane: a run's state line, its loss and learning-rate plots, and its live log."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static

from tunedeck.core.crash import Failure, recorded
from tunedeck.core.events import Error, Resume, Start
from tunedeck.core.health import DivergingOffer, ResumeOffer
from tunedeck.core.probes import recorded_checks
from tunedeck.core.run_follower import RunUpdate
from tunedeck.core.run_history import RunHistory, Series
from tunedeck.core.status_text import RunFigures

from ...messages import OverlayRequested, RunSwitchRequested, SlowerResumeRequested, StopRequested
from ...widgets.covered import covered_lines
from ...widgets.dialogs import Confirm
from .health_findings import HealthFindings, finding_content
from .loss_plot import FINDING_MARK, SMOOTHING_STEPS, LearningRatePlot, LossPlot
from .run_log import RunLog
from .run_status_line import RunStatusLine


# The states whose status line moves with the clock: elapsed time, the ETA, "stalled".
TIMED_STATES = ("starting", "running", "following")
CLOCK_TICK_S = 1.0


class RunView(Vertical):
    """What is under the status line: the health line, the plots and the log, which cover it."""

    render_lines = covered_lines


class TrainingPane(Vertical):
    PANE_TITLE = "Training"
    # The health line shows once there is a finding; one line, cut short rather than wrapped
    # (the full text is in the list the health-findings key opens).
    DEFAULT_CSS = """
    TrainingPane { height: 1fr; }
    TrainingPane #run-view { height: 1fr; }
    TrainingPane #health-line { display: none; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainingPane #plot-key { height: 1; padding: 0 1; color: $text-muted; }
    TrainingPane #plots { height: 2fr; min-height: 8; }
    TrainingPane #loss-plot { height: 3fr; }
    TrainingPane #lr-plot { height: 1fr; min-height: 5; }
    TrainingPane.-short #lr-plot { display: none; }
    """
    BINDINGS = [
        Binding("x", "stop", "Stop", id="stop-run"),
        Binding("n", "stop_after_checkpoint", "Stop at ckpt", id="stop-after-checkpoint"),
        Binding("left_square_bracket", "switch_run(-1)", "Prev run", id="previous-run"),
        Binding("right_square_bracket", "switch_run(1)", "Next run", id="next-run"),
        Binding("o", "overlay", "Overlay", id="overlay-run"),
        Binding("s", "smoothing", "Smooth", id="cycle-smoothing"),
        Binding("l", "log_scale", "Log y", id="toggle-log-scale"),
        Binding("h", "health_findings", "Findings", id="health-findings"),
        # Shown only while a diverging finding stands and there is a checkpoint to go back to.
        Binding("r", "resume_slower", "Resume ½ lr", id="resume-half-rate"),
    ]
    # The status line and the run view cover the pane (its line ticks once a second).
    render_lines = covered_lines

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.history = RunHistory()
        self.name_shown = ""
        self.status: dict = {}
        self.state = "no run"
        self.note = ""
        self.serving_url = ""  # the App's model server, when one runs
        self.failure: Optional[Failure] = None  # why the run (or log) ended badly, if it did
        self._key: Optional[tuple] = None  # what the plot key says: its markup and its figures
        self._finding_shown = None  # the finding on the health line (an update costs a layout)
        self.diverging = DivergingOffer()
        self.resumable: set[int] = set()  # the followed run's resumable checkpoints
        self.adapters_dir: Optional[Path] = None  # where its answer checks are, if it has any
        self.offer: Optional[ResumeOffer] = None
        self._clock: Optional[Timer] = None  # the status line's once-a-second refresh
        self.ticking = False  # whether it runs
        # Kept, not queried: it is shown once a second (a query walks the pane's widgets).
        self.status_line = RunStatusLine()

    def compose(self) -> ComposeResult:
        yield self.status_line
        with RunView(id="run-view"):
            yield Static(id="health-line")
            yield Static(id="plot-key")
            with Vertical(id="plots"):
                yield LossPlot(id="loss-plot")
                yield LearningRatePlot(id="lr-plot")
            yield RunLog(id="run-log")

    def on_mount(self) -> None:
        # Elapsed time, the ETA countdown and "stalled" change without any event arriving: once a
        # second, while they move (a run that trains, a log followed) and the pane is in sight.
        self._clock = self.set_interval(CLOCK_TICK_S, lambda: self.refresh_status(self.app.clock()),
                                        pause=True)
        self._set_clock()

    def on_show(self) -> None:
        self.refresh_status(self.app.clock())  # what the clock moved while out of sight
        self._set_clock()

    def on_hide(self) -> None:
        self._set_clock()

    def _set_clock(self) -> None:
        """The clock ticks only while a figure moves with time and someone can see it."""
        if self._clock is None:
            return  # not mounted yet: on_mount sets it
        self.ticking = self.state in TIMED_STATES and self.is_on_screen
        if self.ticking:
            self._clock.resume()
        else:
            self._clock.pause()

    def on_resize(self) -> None:
        # Below 30 rows the learning rate gets a number in the key instead of a plot.
        self.set_class(self.size.height < 30, "-short")

    def focus_main(self) -> None:
        self.query_one(RunLog).focus()

    # -- what the App tells the pane --------------------------------------------------------
    def follow(self, name: str, state: str) -> None:
        """Start over on another run (or log); its history arrives with the next updates."""
        self.history = RunHistory()
        self.name_shown, self.state, self.status, self.note = name, state, {}, ""
        self.refresh_bindings()
        self._set_clock()
        self.failure = None
        self.diverging, self.resumable, self.adapters_dir = DivergingOffer(), set(), None
        self._show_offer()
        self.query_one(RunLog).clear()
        plot = self.query_one(LossPlot)
        plot.show(self.history.train, self.history.val, None)
        plot.show_overlay(None)
        plot.load_library_soon()
        self.query_one(LearningRatePlot).show(self.history.lr)
        self._show_key()
        self._show_health()

    def add_update(self, update: RunUpdate, live: bool, now: float) -> None:
        """``live`` is False for the backlog read on attaching: its arrival times mean nothing."""
        if update.events:
            self._note_failures(update.events)
            self.history.add(update.events, update.arrived_at if live else None)
            self.query_one(LossPlot).show(self.history.train, self.history.val,
                                          self.history.best_val(), self.history.findings)
            self.query_one(LearningRatePlot).show(self.history.lr)
            self._show_key()
            self._show_health()
        if update.events or update.checkpoints is not None:
            for event in update.events:
                self.diverging.observe(event)
            if update.checkpoints is not None:
                self.resumable = {c.iteration for c in update.checkpoints if c.resumable}
                if update.checkpoints:
                    self.adapters_dir = update.checkpoints[0].path.parent
            self._show_offer()
        if update.log_lines:
            self.query_one(RunLog).add_output(update.log_lines)
        if update.status is not None:
            self.status = update.status
        if update.failure is not None:
            self.failure = update.failure
        if update.state is not None:
            changed = update.state != self.state
            self.state = update.state
            if changed:
                self.refresh_bindings()  # x and n only while there is a run to stop
                self._set_clock()
            if update.state not in ("starting", "running"):
                self.note = ""
        self.refresh_status(now)

    def _note_failures(self, events) -> None:
        """The last error since the last start, with what to try (a resume starts again)."""
        for event in events:
            if isinstance(event, Error):
                self.failure = recorded(event.message, event.advice)
            elif isinstance(event, (Start, Resume)):
                self.failure = None

    def show_overlay(self, series: Optional[Series], label: str) -> None:
        self.query_one(LossPlot).show_overlay(series, label)
        self._show_key()

    def _show_key(self) -> None:
        """What each colour of the loss plot is, with the figures worth reading exactly."""
        plot, h = self.query_one(LossPlot), self.history
        markup = ["[$plot-train]━[/] train", "[$plot-val]━[/] val"]
        values = {}
        if (best := h.best_val()) is not None:
            markup.append("[$plot-best]◆[/] best val $best")
            values["best"] = f"{best[1]:.3f} @ {best[0]}"
        if h.findings:
            markup.append(f"[$warning]{FINDING_MARK}[/] finding")
        if plot.overlay is not None:
            markup.append("[$plot-overlay]━[/] $overlay")
            values["overlay"] = plot.overlay_label
        if len(h.lr):
            markup.append("[$plot-lr]lr[/] $lr")
            values["lr"] = f"{h.lr.values[-1]:.2e}"
        if plot.smoothing:
            markup.append(f"smoothing {plot.smoothing:.2f}")
        if plot.log_scale:
            markup.append("log scale")
        said = ("   ".join(markup), tuple(values.items()))
        if said != self._key:  # most reports change nothing here (compared before any markup is parsed)
            self._key = said
            # One line high whatever it says: a repaint, not a layout of the screen.
            self.query_one("#plot-key", Static).update(Content.from_markup(said[0], **values), layout=False)

    def _show_health(self) -> None:
        """The newest finding under the status line (hidden while there is none)."""
        newest = self.history.findings[-1] if self.history.findings else None
        if newest is self._finding_shown:
            return
        self._finding_shown = newest
        line = self.query_one("#health-line", Static)
        line.display = newest is not None  # shown or hidden: that lays the screen out
        if newest is not None:
            # One line high (the footer's h opens the full list): a new finding is a repaint.
            line.update(finding_content(newest), layout=False)

    def _show_offer(self) -> None:
        """The resume a diverging finding offers, in the footer while it stands (a followed
        log has no checkpoints, so it never offers one)."""
        offer = self.diverging.offer(self.resumable)
        if offer != self.offer:
            self.offer = offer
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if action == "resume_slower":
            return self.offer is not None
        if action in ("stop", "stop_after_checkpoint"):
            return self.state in ("starting", "running")
        return True

    def set_note(self, note: str, now: float) -> None:
        self.note = note
        self.refresh_status(now)

    def set_serving(self, url: Optional[str], now: float) -> None:
        """The App's model server, shown beside the run whichever checkpoint it serves."""
        self.serving_url = url or ""
        self.refresh_status(now)

    def refresh_status(self, now: float) -> None:
        h, status = self.history, self.status
        last = h.last_train
        running = self.state == "running"
        state = "stalled" if running and h.is_stalled(now) else self.state
        if state in ("following", "ended") and self.failure is not None:
            state = "failed"  # a followed log has no status file: its crash says it
        started = status.get("started_at")
        ended = status.get("ended_at")
        elapsed = None
        if started:
            elapsed = (now if running or self.state == "starting" else (ended or now)) - started
        estimate = h.eta.estimate(now) if self.state in ("running", "following") else None
        self.status_line.show(RunFigures(
            name=self.name_shown, state=state, iteration=h.iteration,
            total_iters=h.total_iters or int(status.get("total_iters") or 0),
            loss=last.loss if last else None, tokens_per_sec=last.tokens_per_sec if last else None,
            peak_mem_gb=last.peak_mem_gb if last else None, elapsed_s=elapsed,
            eta_s=estimate[0] if estimate else None, finish_at=estimate[1] if estimate else None,
            ranks=int(status.get("world_size") or 1),
            error=self._failure_line(state),
            note=self.note, serving=self.serving_url), now)

    def _failure_line(self, state: str) -> Optional[str]:
        """What the run died of and what to try, for a run that failed or was cut short."""
        if state not in ("failed", "interrupted"):
            return None
        if self.failure is not None:
            return self.failure.one_line()
        error = self.status.get("error")
        return recorded(str(error), self.status.get("advice")).one_line() if error else None

    # -- keys ----------------------------------------------------------------------------------
    def action_stop(self) -> None:
        self.post_message(StopRequested(after_checkpoint=False))

    def action_stop_after_checkpoint(self) -> None:
        self.post_message(StopRequested(after_checkpoint=True))

    def action_switch_run(self, step: int) -> None:
        self.post_message(RunSwitchRequested(step))

    def action_overlay(self) -> None:
        self.post_message(OverlayRequested())

    def action_smoothing(self) -> None:
        plot = self.query_one(LossPlot)
        later = [s for s in SMOOTHING_STEPS if s > plot.smoothing]
        plot.smoothing = later[0] if later else SMOOTHING_STEPS[0]
        self._show_key()

    def action_health_findings(self) -> None:
        checks = recorded_checks(self.adapters_dir) if self.adapters_dir else {}
        if not self.history.findings and not checks:
            self.notify("no health findings for this run", severity="information")
            return

        def closed(choice: Optional[str]) -> None:
            if choice == "resume":
                self.action_resume_slower()

        self.app.push_screen(HealthFindings(self.name_shown, self.history.findings, self.offer, checks),
                             closed)

    def action_resume_slower(self) -> None:
        offer = self.offer
        if offer is None:
            return
        question = (f"{self.name_shown} is diverging. Resume it from checkpoint {offer.checkpoint} "
                    f"(the last one before the loss went wrong) with learning_rate "
                    f"{offer.new_learning_rate:g} instead of {offer.learning_rate:g}? The optimizer "
                    f"state and the iteration count carry on; later checkpoints are moved aside"
                    + ("; the run is stopped first." if self.state in ("starting", "running") else "."))

        def answered(confirmed: Optional[bool]) -> None:
            if confirmed:
                self.post_message(SlowerResumeRequested(offer.checkpoint, offer.new_learning_rate))

        self.app.push_screen(Confirm(question, confirm="Resume"), answered)

    def action_log_scale(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_scale = not plot.log_scale
        self._show_key()
