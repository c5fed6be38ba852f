"""The Training pane on its own: what a user reads in the status line, the plot key and the log."""

import logging
import shutil
import time
from pathlib import Path

import pytest
from textual import on
from textual.geometry import Region

from tunedeck.core.checkpoints import delete_checkpoint
from tunedeck.core.events import End, Error, EventWriter, Health, Resume, Start, Train, Val
from tunedeck.core.logparse import parse_file
from tunedeck.tui.messages import OverlayRequested, RunSwitchRequested, SlowerResumeRequested, StopRequested
from tunedeck.core.rundir import RunDirectory
from tunedeck.tui.panes.training.health_findings import HealthFindings
from tunedeck.core.log_follower import follow_log_file
from tunedeck.tui.panes.training.loss_plot import LossPlot
from tunedeck.core.run_follower import RunFollower, RunUpdate
from tunedeck.tui.panes.training.run_log import RunLog
from tunedeck.tui.panes.training.run_status_line import Figures
from tunedeck.tui.widgets.dialogs import Confirm
from tunedeck.tui.panes.training import TrainingPane

from .harness import PaneHarness, wait_until
from .projects import train_to_the_end, write_project

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
NOW = 1_800_000_000.0
HOSTILE = ["[bold red]x[/]", "[link=file:///etc/passwd]x[/link]", "title \x1b]0;pwned\x07 done"]


def status_text(app) -> str:
    figures = app.query_one(Figures)
    return app.query_one("#state").render().plain + " " + " ".join(figures.parts)


def screen_lines(log: RunLog) -> list[str]:
    """The log's lines in sight (not its border above them, nor the scrollbar below)."""
    return [log.render_line(y).text.rstrip() for y in range(log.scrollable_content_region.height)]


async def test_a_real_mlx_lm_log_fills_the_status_line_plot_and_log():
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(TrainingPane)
        log = LOGS / "v032_long.log"
        pane.follow(log.name, "following")
        pane.add_update(RunUpdate(events=parse_file(log), arrived_at=NOW, backlog=True,
                                  log_lines=log.read_text().splitlines()), live=False, now=NOW)
        await pilot.pause()
        text = status_text(app)
        assert "iter 1200/1200 (100%)" in text
        assert "loss 1.818" in text
        assert "2.0k tok/s" in text
        key = str(app.query_one("#plot-key").render())
        assert "best val" in key
        shown = "\n".join(screen_lines(app.query_one(RunLog)))
        assert "0001200_adapters.safetensors" in shown
        assert "\x1b" not in shown  # mlx-lm's colours are stripped


async def test_markup_and_escape_sequences_in_the_log_show_literally():
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.follow("run", "running")
        pane.add_update(RunUpdate(log_lines=HOSTILE, arrived_at=NOW), live=True, now=NOW)
        await pilot.pause()
        shown = screen_lines(app.query_one(RunLog))
        assert "[bold red]x[/]" in shown
        assert "[link=file:///etc/passwd]x[/link]" in shown
        assert "title ^[]0;pwned^G done" in shown


def train(i: int) -> Train:
    return Train(iter=i, loss=3.0 - i / 100, lr=1e-3, tokens_per_sec=1500.0, peak_mem_gb=1.25)


def following_a_run_started_5_s_ago(app) -> TrainingPane:
    pane = app.query_one(TrainingPane)
    pane.follow("run", "running")
    pane.add_update(RunUpdate(events=[Start(total_iters=100)], state="running",
                              status={"started_at": NOW - 5}, arrived_at=NOW), live=True, now=NOW)
    return pane


async def test_a_run_that_goes_silent_is_shown_as_stalled():
    now = [NOW]
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        pane = following_a_run_started_5_s_ago(app)
        for k in range(1, 6):
            pane.add_update(RunUpdate(events=[train(10 * k)], arrived_at=NOW + k), live=True, now=NOW + k)
        await pilot.pause()
        assert status_text(app).startswith("running")
        assert "peak 1.25 GB" in status_text(app)
        # The app's clock moves too, so its own once-a-second refresh agrees with this one.
        now[0] = NOW + 600
        pane.refresh_status(now[0])
        await pilot.pause()
        assert status_text(app).startswith("stalled")


async def test_a_slow_step_of_a_run_read_in_batches_is_not_a_stall():
    # Seen on a healthy demo run on a loaded machine: the follower read the reports three at a
    # time, so the median gap between arrivals was nothing and 30 s of silence said "stalled".
    now = [NOW]
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        pane = following_a_run_started_5_s_ago(app)
        at = NOW
        for k in range(1, 13):
            # 10 steps at 0.5 it/s: 20 s per report by the run's own clock.
            event = Train(iter=10 * k, loss=3.0 - k / 100, lr=1e-3, it_per_sec=0.5)
            if k % 3 == 1:
                at += 60
            pane.add_update(RunUpdate(events=[event], arrived_at=at), live=True, now=at)
        now[0] = at + 45  # one step slower than the others
        pane.refresh_status(now[0])
        await pilot.pause()
        assert status_text(app).startswith("running")
        now[0] = at + 5 * 60 + 1  # five of its slowest intervals without a word
        pane.refresh_status(now[0])
        await pilot.pause()
        assert status_text(app).startswith("stalled")


async def test_the_status_line_ticks_only_for_a_run_that_trains_and_is_in_sight():
    # Its once-a-second refresh woke an app following a finished run, or hiding the pane.
    now = [NOW]
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        pane = following_a_run_started_5_s_ago(app)
        await wait_until(pilot, lambda: pane.ticking, what="the clock of a running run")
        now[0] = NOW + 7  # the elapsed time moves with the app's clock, no event needed
        await wait_until(pilot, lambda: "elapsed 12s" in status_text(app), timeout=60,
                         what="the status line's tick")
        pane.display = False
        await wait_until(pilot, lambda: not pane.ticking, what="the clock stopped out of sight")
        pane.display = True
        await wait_until(pilot, lambda: pane.ticking, what="the clock back in sight")
        pane.add_update(RunUpdate(state="finished"), live=True, now=now[0])
        assert not pane.ticking


async def test_lines_written_to_the_log_lay_nothing_out(monkeypatch):
    # Textual's Log laid the whole screen out at each write: 20 ms of every update of a live run.
    from textual.screen import Screen

    layouts = []
    refresh_layout = Screen._refresh_layout
    monkeypatch.setattr(Screen, "_refresh_layout",
                        lambda self, *a, **k: layouts.append(1) or refresh_layout(self, *a, **k))
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        log = app.query_one(RunLog)
        await pilot.pause()
        before = len(layouts)
        for k in range(60):
            log.add_output([f"line {k}"])
            await pilot.pause()
        assert len(layouts) - before <= 2  # the scrollbar appearing may lay it out, once
        assert log.show_vertical_scrollbar and log.vertical_scrollbar.window_virtual_size == 60
        assert [line for line in screen_lines(log) if line][-1] == "line 59"  # scrolled to the end


async def test_the_log_follows_its_newest_line_when_it_gets_shorter_until_the_user_scrolls_up():
    # At 80x24 the status line wraps to two lines once a run reports its figures: the log lost a
    # line of height, was no longer at its end, and stopped following the run.
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(80, 30)) as pilot:
        log = app.query_one(RunLog)
        log.add_output([f"line {k}" for k in range(40)])
        await pilot.pause()
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        log.add_output(["line 40"])
        await pilot.pause()
        assert [line for line in screen_lines(log) if line][-1] == "line 40"
        log.focus()
        await pilot.press("up")  # the user reads back: the log stays where they are
        log.add_output(["line 41"])
        await pilot.pause()
        assert [line for line in screen_lines(log) if line][-1] == "line 39"
        await pilot.press("end")  # and back at the end, it follows again
        log.add_output(["line 42"])
        await pilot.pause()
        assert [line for line in screen_lines(log) if line][-1] == "line 42"


async def test_a_log_line_is_rendered_once_however_often_it_is_painted(monkeypatch):
    # Textual's Log kept a rendered line only while text was selected: each report scrolled the
    # log and rendered every visible line again (a tenth of the app's time on a fast run).
    processed = []
    process_line = RunLog._process_line
    monkeypatch.setattr(RunLog, "_process_line",
                        classmethod(lambda cls, line: processed.append(line) or process_line(line)))
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        log = app.query_one(RunLog)
        log.add_output([f"line {k}" for k in range(40)])
        await pilot.pause()
        painted = screen_lines(log)
        processed.clear()
        assert screen_lines(log) == painted
        assert processed == []
        log.add_output(["line 40"])  # scrolls by a line: only the new one is rendered
        await pilot.pause()
        assert [line for line in screen_lines(log) if line][-1] == "line 40"
        assert set(processed) == {"line 40"}


OOM_LINE = ("out of memory (Metal: Insufficient Memory) — smaller batch_size or max_seq_length, "
            "grad_checkpoint, fewer num_layers")


async def test_a_failed_run_shows_its_cause_and_what_to_try():
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(200, 30)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.follow("run", "running")
        # As the runner records an exception: its words, no advice of its own.
        events = [Start(total_iters=50), Val(iter=1, loss=4.0), train(10),
                  Error(message="RuntimeError: [METAL] Command buffer execution failed: "
                                "Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)"),
                  End(state="failed")]
        pane.add_update(RunUpdate(events=events, state="failed", arrived_at=NOW), live=True, now=NOW)
        await pilot.pause()
        text = status_text(app)
        assert text.startswith("failed")
        assert f"error: {OOM_LINE}" in text


async def test_a_followed_log_that_died_of_a_metal_abort_is_failed_with_the_cause():
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(TrainingPane)
        log = LOGS / "v032_crash_metal_oom.log"
        pane.follow(log.name, "following")
        pane.add_update(RunUpdate(events=parse_file(log), arrived_at=NOW, backlog=True,
                                  state="following"), live=False, now=NOW)
        await pilot.pause()
        text = status_text(app)
        assert text.startswith("failed")
        assert "iter 20/30" in text and f"error: {OOM_LINE}" in text
        # Wider than the pane: it wraps between its words, and all of it is on the screen.
        figures = app.query_one(Figures)
        drawn = figures.render_lines(Region(0, 0, figures.size.width, figures.size.height))
        shown = [line.text.strip() for line in drawn]
        assert " ".join(shown[1:]) == f"error: {OOM_LINE}"


async def test_an_interrupted_run_shows_the_crash_its_log_ends_with(tmp_path):
    # status.json still says running and nothing holds the lock: the follower reads the cause
    # from the end of train.log, which ends with the Metal abort.
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    run.update_status(state="running", total_iters=30, started_at=NOW - 60)
    shutil.copy(LOGS / "v032_crash_metal_oom.log", run.train_log)
    update = RunFollower(run).poll()
    assert update.state == "interrupted"
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(200, 30)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.follow("run", "interrupted")
        pane.add_update(update, live=False, now=NOW)
        await pilot.pause()
        text = status_text(app)
        assert text.startswith("interrupted")
        assert f"error: {OOM_LINE}" in text


async def test_a_crash_before_a_resume_is_forgotten():
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(200, 30)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.follow("run", "running")
        events = [Start(total_iters=50), train(10), Error(message="Segmentation fault: 11"),
                  End(state="failed"), Resume(iter=10, source="adapters/0000010_adapters.safetensors"),
                  Start(total_iters=50), train(20)]
        pane.add_update(RunUpdate(events=events, state="running", arrived_at=NOW), live=True, now=NOW)
        await pilot.pause()
        assert "error" not in status_text(app)
        pane.add_update(RunUpdate(state="interrupted", arrived_at=NOW), live=True, now=NOW)
        await pilot.pause()
        assert status_text(app).startswith("interrupted") and "error" not in status_text(app)


async def test_keys_ask_the_app_to_stop_switch_and_overlay():
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.focus_main()
        pane.add_update(RunUpdate(state="running", arrived_at=NOW), live=True, now=NOW)
        await pilot.pause()
        await pilot.press("x", "n", "right_square_bracket", "left_square_bracket", "o")
        stops = app.of_type(StopRequested)
        assert [s.after_checkpoint for s in stops] == [False, True]
        # A run that has ended has nothing to stop: the keys are not offered and do nothing.
        pane.add_update(RunUpdate(state="finished", arrived_at=NOW), live=True, now=NOW)
        await pilot.pause()
        await pilot.press("x", "n")
        assert len(app.of_type(StopRequested)) == 2
        assert [m.step for m in app.of_type(RunSwitchRequested)] == [1, -1]
        assert app.of_type(OverlayRequested)


async def test_smoothing_and_log_scale_keys_change_the_plot_and_say_so():
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.focus_main()
        await pilot.press("s", "l")
        key = str(app.query_one("#plot-key").render())
        assert "smoothing 0.60" in key
        assert "log scale" in key


# -- following a run directory that changes under the follower -----------------------------------

def copy_of_finished_run(finished_project: Path, tmp_path: Path) -> RunDirectory:
    [source] = (finished_project / "runs").iterdir()
    shutil.copytree(source, tmp_path / source.name)
    return RunDirectory(tmp_path / source.name)


def test_follower_goes_on_when_a_checkpoint_file_vanishes(finished_project, tmp_path, caplog):
    run = copy_of_finished_run(finished_project, tmp_path)
    # What a resume or a delete leaves between the follower's listing and its stat: a name that
    # lists but is gone (a dangling link lists like the file did, and stat says FileNotFoundError).
    ghost = run.adapters / "0000050_adapters.safetensors"
    ghost.symlink_to(run.adapters / "0000050_moved_away.safetensors")
    follower = RunFollower(run)
    with caplog.at_level(logging.WARNING, logger="tunedeck.core.run_follower"):
        first = follower.poll()
        second = follower.poll()
    # The rest of the poll still came: the run's history, its log, its status and state.
    assert [e.iter for e in first.events if isinstance(e, Train)][-1] == 40
    assert any("0000040_adapters.safetensors" in line for line in first.log_lines)
    assert first.status["state"] == "finished" and first.state == "finished"
    assert first.checkpoints is None and second.checkpoints is None
    # Said once, not at every poll.
    assert len([r for r in caplog.records if "checkpoints" in r.getMessage()]) == 1
    ghost.unlink()
    assert [c.iteration for c in follower.poll().checkpoints] == [10, 20, 30, 40]


def test_follower_sees_a_deleted_checkpoint_and_a_vanished_log(finished_project, tmp_path):
    run = copy_of_finished_run(finished_project, tmp_path)
    follower = RunFollower(run)
    assert [c.iteration for c in follower.poll().checkpoints] == [10, 20, 30, 40]
    delete_checkpoint(run, 20)
    run.train_log.unlink()
    update = follower.poll()
    assert [c.iteration for c in update.checkpoints] == [10, 30, 40]
    assert update.log_lines == []


def test_a_followed_log_file_gives_its_crash_once_it_goes_quiet(tmp_path):
    log = tmp_path / "train.log"
    shutil.copy(LOGS / "v032_crash_metal_oom.log", log)
    deadline = time.monotonic() + 60  # generous: the follower waits one quiet second
    errors = []
    for update in follow_log_file(log, lambda: time.monotonic() > deadline):
        errors += [e for e in update.events if isinstance(e, Error)]
        if errors:
            break
    assert errors == [Error(message="out of memory (Metal: Insufficient Memory)",
                            advice=OOM_LINE.split(" — ")[1])]


# -- health findings ------------------------------------------------------------------------------

def _record(run: RunDirectory, *findings: Health) -> None:
    """Findings appended to metrics.jsonl as the runner's monitor and the answer checks write them."""
    with EventWriter(run.metrics_jsonl) as writer:
        for finding in findings:
            writer.append(finding)


SLOW = Health(iter=20, issue="slow_down", severity="warn", evidence="it/s 40% below its start",
              advice="close other programs")
DEGENERATE = Health(iter=30, issue="degenerate", severity="bad",
                    evidence="3 of 3 answers degenerate: hi → <|endoftext|>", advice="stop earlier")


async def test_findings_reach_the_pane_as_a_line_plot_marks_and_a_list(finished_project, tmp_path):
    run = copy_of_finished_run(finished_project, tmp_path)
    follower = RunFollower(run)
    backlog = follower.poll()
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.follow(run.path.name, "finished")
        pane.add_update(backlog, live=False, now=NOW)
        await pilot.pause()
        line = app.query_one("#health-line")
        assert not line.display  # a healthy run: no line, no mark
        assert "▲" not in app.query_one(LossPlot).text()

        _record(run, SLOW, DEGENERATE)
        update = follower.poll()
        assert [e for e in update.events if isinstance(e, Health)] == [SLOW, DEGENERATE]
        # The answer check changes a checkpoint's health: the index is read again.
        assert update.checkpoints is not None
        assert {c.iteration: c.health for c in update.checkpoints}[30] == "bad"
        pane.add_update(update, live=True, now=NOW)
        plot = app.query_one(LossPlot)
        await wait_until(pilot, lambda: plot.settled, what="the plot to be drawn")

        assert line.display
        shown = line.render()
        assert str(shown).startswith("iter 30  BAD degenerate: 3 of 3 answers degenerate")
        assert str(shown).endswith("— stop earlier")
        [head] = [s for s in shown.spans if s.start == 0]
        assert str(head.style) == "$error"  # the theme's colour for bad
        assert plot.text().count("▲") == 2
        assert "finding" in str(app.query_one("#plot-key").render())
        footer = [b.description for _, b, enabled, _ in app.active_bindings.values()]
        assert "Findings" in footer

        await pilot.press("h")
        screen = app.screen
        assert isinstance(screen, HealthFindings)
        listed = [str(s.render()) for s in screen.query(".finding")]
        assert [s.split(":")[0] for s in listed] == ["iter 30  BAD degenerate", "iter 20  WARN slow_down"]
        await pilot.press("escape")
        assert not isinstance(app.screen, HealthFindings)


async def test_findings_after_a_resumed_checkpoint_are_forgotten():
    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(160, 30)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.follow("run", "running")
        events = [Start(total_iters=50), train(10), train(20), SLOW, DEGENERATE,
                  Resume(iter=20, source="adapters/0000020_adapters.safetensors"), train(30)]
        pane.add_update(RunUpdate(events=events, state="running", arrived_at=NOW), live=True, now=NOW)
        await pilot.pause()
        # The finding at 30 was about weights the run no longer leads to; the one at 20 stays.
        assert str(app.query_one("#health-line").render()).startswith("iter 20  WARN slow_down")
        await pilot.press("h")
        assert len(app.screen.query(".finding")) == 1


# -- a diverging run: the finding offers a resume with half the learning rate -------------------

@pytest.fixture(scope="module")
def diverged_project(tmp_path_factory, tiny_model) -> Path:
    """A real run of the tiny model at learning rate 1.0: the loss falls, then climbs back to
    ln(vocabulary) and stays there (checkpoints every 5 iterations)."""
    project = write_project(tmp_path_factory.mktemp("diverged") / "project", tiny_model,
                            learning_rate=1.0, save_every=5)
    train_to_the_end(project)
    return project


class OfferHarness(PaneHarness):
    @on(SlowerResumeRequested)
    def _slower(self, message: SlowerResumeRequested) -> None:
        self.received.append(message)


def footer_keys(app) -> list[str]:
    return [b.description for _, b, enabled, _ in app.active_bindings.values() if enabled]


async def show_finished_run(app, pilot, project: Path, tmp_path: Path) -> TrainingPane:
    """The pane following (a copy of) the project's finished run, its backlog read."""
    run = copy_of_finished_run(project, tmp_path)
    pane = app.query_one(TrainingPane)
    pane.follow(run.path.name, "finished")
    pane.add_update(RunFollower(run).poll(), live=False, now=NOW)
    await pilot.pause()
    return pane


async def test_a_diverging_run_offers_a_resume_with_half_the_rate_after_a_confirm(diverged_project, tmp_path):
    app = OfferHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = await show_finished_run(app, pilot, diverged_project, tmp_path)
        assert str(app.query_one("#health-line").render()).split(":")[0].endswith("BAD diverging")
        offer = pane.offer
        assert offer is not None and (offer.learning_rate, offer.new_learning_rate) == (1.0, 0.5)
        assert "Resume ½ lr" in footer_keys(app)

        # From the findings list: it says what r does, r asks to confirm, Cancel does nothing.
        await pilot.press("h")
        assert isinstance(app.screen, HealthFindings)
        said = str(app.screen.query_one("#resume-offer").render())
        assert said == f"r resume from checkpoint {offer.checkpoint} with learning_rate 0.5 (now 1)"
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, Confirm), what="the confirm")
        question = str(app.screen.query_one(".question").render())
        assert f"from checkpoint {offer.checkpoint}" in question
        assert "learning_rate 0.5 instead of 1" in question
        await pilot.click("#cancel")
        await pilot.pause()
        assert not app.of_type(SlowerResumeRequested)

        # From the pane's own key, confirmed: the App is asked for that resume.
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, Confirm), what="the confirm")
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: app.of_type(SlowerResumeRequested), what="the request")
        [asked] = app.of_type(SlowerResumeRequested)
        assert (asked.checkpoint, asked.learning_rate) == (offer.checkpoint, 0.5)


async def test_a_healthy_run_offers_no_resume(finished_project, tmp_path):
    app = OfferHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = await show_finished_run(app, pilot, finished_project, tmp_path)
        assert pane.offer is None and "Resume ½ lr" not in footer_keys(app)
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, Confirm) and not app.of_type(SlowerResumeRequested)


async def test_watching_a_plain_log_of_a_diverging_run_shows_the_finding(diverged_project, tmp_path):
    # mlx-lm's own output only: the runner's "[tunedeck]" lines (its findings among them) left out.
    [source] = (diverged_project / "runs").iterdir()
    log = tmp_path / "train.log"
    log.write_text("".join(line for line in (source / "train.log").read_text().splitlines(True)
                           if not line.startswith("[tunedeck]")))
    assert "diverging" not in log.read_text()
    updates, found = [], []
    deadline = time.monotonic() + 60
    for update in follow_log_file(log, lambda: time.monotonic() > deadline or bool(found)):
        updates.append(update)
        found += [e for e in update.events if isinstance(e, Health)]
    assert [h.issue for h in found] == ["diverging"]

    app = OfferHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.follow(log.name, "following")
        for update in updates:
            pane.add_update(update, live=False, now=NOW)
        await pilot.pause()
        line = str(app.query_one("#health-line").render())
        assert "BAD diverging" in line and "ln(400)" in line
        assert pane.offer is None  # a log has no checkpoints to resume from
        await pilot.press("h")
        assert [str(s.render()).split(":")[0] for s in app.screen.query(".finding")] == [
            f"iter {found[0].iter}  BAD diverging"]


async def test_an_answer_check_shows_its_cost_in_checkpoints_and_in_the_findings_list(
        finished_project, tmp_path):
    from tunedeck.core import probes
    from tunedeck.tui.panes.checkpoints.pane import CheckpointBrowser

    run = copy_of_finished_run(finished_project, tmp_path)
    follower = RunFollower(run)
    backlog = follower.poll()
    # The check a run with answer_checks on starts after its checkpoint, here by hand.
    assert probes.main([str(run.path), "40"]) == 0
    [check] = probes.recorded_checks(run.adapters).values()
    update = follower.poll()
    assert update.checkpoints is not None  # the check's file is beside the checkpoints

    app = PaneHarness(lambda: CheckpointBrowser(), clock=lambda: NOW)
    async with app.run_test(size=(200, 30)) as pilot:
        table = app.query_one(CheckpointBrowser)
        table.show(update.checkpoints, NOW)
        await pilot.pause()
        health = {c.iteration: str(table.get_cell(str(c.iteration), "health")) for c in update.checkpoints}
        assert health[40].split(":")[0] == f"{update.checkpoints[-1].health} · check {check.seconds:.1f} s"
        assert health[30] == "ok"  # never checked

    app = PaneHarness(lambda: TrainingPane(), clock=lambda: NOW)
    async with app.run_test(size=(200, 40)) as pilot:
        pane = app.query_one(TrainingPane)
        pane.follow(run.path.name, "finished")
        pane.add_update(backlog, live=False, now=NOW)
        pane.add_update(update, live=True, now=NOW)
        await pilot.pause()
        await pilot.press("h")
        assert isinstance(app.screen, HealthFindings)
        said = str(app.screen.query_one("#answer-checks").render())
        assert said == f"answer checks by checkpoint: 40 {check.summary}"
        assert f"{check.seconds:.1f} s" in said
