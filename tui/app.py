"""The tunedeck App: five panes over one project; the App owns runs and every long worker.

Panes post what the user asked for (``messages``); the App does it in thread workers, which only
post messages back. Nothing here keeps a run alive: a run is a detached process writing files,
and the App follows those files, so quitting (or losing the terminal) never stops training.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import MountError
from textual.widgets import TabbedContent, Tabs
from textual.worker import Worker, WorkerState, get_current_worker

from tunedeck.core.errors import BadInput, WorkFailed
from tunedeck.core.rundir import RunDirectory, find_runs
from tunedeck.themes import DEFAULT_THEME, all_themes

from .model_sessions import ModelSessions
from .keymap import apply_user_keymap
from .messages import (ChatRequested, DeleteRequested, FormBuilt, OverlayLoaded, OverlayRequested,
                       ResumeRequested, RunStarted, RunStopped, RunSwitchRequested, RunUpdated, ServingChanged,
                       ServingToggled, SlowerResumeRequested, StartRequested, StopRequested, WarmStartRequested)
from .palette import binding_commands
from .panes.hyperparameters import HyperparametersPane
from .serving import CheckpointServing
from .settings import load_settings, save_setting
from .widgets.pane_tabs import PaneTab, PaneTabs, PanesScreen
from .widgets.key_footer import KeyFooter

# How often the followed run's files are looked at: the floor of the line-to-screen latency.
POLL_S = 0.05
PANES = (("data", "Data"), ("hyperparameters", "Hyperparameters"), ("training", "Training"),
         ("checkpoints", "Checkpoints"), ("chat", "Chat"))


class TunedeckApp(ModelSessions, App):
    CSS_PATH = "app.tcss"
    TITLE = "tunedeck"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        Binding("f10", "quit", "Quit", id="quit-f10", show=False, priority=True),
        *(Binding(str(n), f"show_pane('{pane}')", f"Show {title}", id=f"show-{pane}", show=False)
          for n, (pane, title) in enumerate(PANES, 1)),
        # In the palette, not the footer: the footer's room goes to the pane's own keys.
        Binding("ctrl+t", "toggle_theme", "Next theme", id="toggle-theme", show=False),
        Binding("escape", "leave_field", "Leave field", id="leave-field", show=False),
    ]

    def __init__(self, project: Optional[Path] = None, watch: Optional[str] = None,
                 clock: Callable[[], float] = time.time, pipe_fd: Optional[int] = None):
        super().__init__()
        self.project = Path(project) if project else None
        self.watch_target = watch
        self.pipe_fd = pipe_fd  # `watch -`: where the piped log comes from
        self.clock = clock  # tests freeze it, so ages and ETAs in snapshots do not move
        self.runs_root: Optional[Path] = self.project / "runs" if self.project else None
        self.followed: Optional[RunDirectory] = None
        self.overlaid: Optional[RunDirectory] = None
        self.own_themes, self.theme_problems = all_themes()  # tunedeck's and the user's theme files
        for theme in self.own_themes:
            self.register_theme(theme)
        remembered = load_settings().get("theme")
        self.theme = remembered if remembered in self.available_themes else DEFAULT_THEME
        # Reattach to the run still going, else the newest one; with no run, start at the form.
        runs = find_runs(self.runs_root) if self.runs_root and watch is None else []
        going = [r for r in runs if r.state() in ("starting", "running")]
        self.first_run: Optional[RunDirectory] = (going or runs or [None])[-1]
        self.first_pane = "training" if watch is not None or runs else "hyperparameters"
        self.panes_to_build: list = []  # (pane, build): built out of sight after the first frame
        self.pane_mounted: dict[str, asyncio.Event] = {}  # set once that pane is mounted
        self._quit_when_built = False  # ctrl+q came while a pane was half built
        self._found_panes: dict[str, object] = {}  # pane id -> the pane, once found mounted
        # open_app turns collection off for the start-up; the panes, like the start-up's objects,
        # live as long as the app and are frozen once built (see _build_next_pane_out_of_sight).
        self._freeze_when_built = not gc.isenabled()
        self.serving = CheckpointServing(self)  # the model server the Checkpoints pane starts

    # -- layout ------------------------------------------------------------------------------
    def get_driver_class(self):
        # Textual's terminal driver wakes ten times a second to read nothing (see tui/driver.py).
        from .driver import terminal_driver

        return terminal_driver(super().get_driver_class())

    def get_default_screen(self) -> Screen:
        screen = PanesScreen(id="_default")
        # The App focuses the pane it shows (action_show_pane). Textual's auto focus first gave
        # the focus to the pane tabs, and each move restyled them and all in them.
        screen.AUTO_FOCUS = ""
        return screen

    def compose(self) -> ComposeResult:
        panes = {
            "data": self._data_pane,
            "hyperparameters": lambda: HyperparametersPane(self.project, id="hyperparameters-pane"),
            "training": self._training_pane_widget,
            "checkpoints": self._checkpoints_pane_widget,
            "chat": self._chat_pane_widget,
        }
        # The first frame must come within a second: panes out of sight are built right after
        # it. When a run is followed from the start, the App writes to Training and Checkpoints
        # at once, so those come with the first frame.
        following = self.first_run is not None or self.watch_target is not None
        eager = {self.first_pane, *(("training", "checkpoints") if following else ())}
        self.panes_to_build = [(pane, panes[pane]) for pane, _ in PANES if pane not in eager]
        with PaneTabs(initial=self.first_pane):
            for pane, title in PANES:
                with PaneTab(title, id=pane):
                    if pane in eager:
                        yield panes[pane]()
        yield KeyFooter()

    # Each pane's module is imported when the pane is built: with the form first, the others'
    # (numpy and the data tools, the plot, the run follower, the chat) load after the first frame.
    # The App finds them by id ("#training-pane") for that reason, not by class.
    def _data_pane(self):
        from .panes.data import DataPane

        return DataPane(self.project, id="data-pane")

    def _training_pane_widget(self):
        from .panes.training import TrainingPane

        return TrainingPane(id="training-pane")

    def _checkpoints_pane_widget(self):
        from .panes.checkpoints import CheckpointsPane

        return CheckpointsPane(id="checkpoints-pane")

    def _chat_pane_widget(self):
        from .panes.chat import ChatPane

        return ChatPane(self.project, id="chat-pane")

    async def _build_next_pane_out_of_sight(self) -> None:
        """Build the next pane out of sight, then the one after it once a frame has been drawn:
        each takes a tenth of a second or more, and the footer or a key must not wait for all."""
        if self.panes_to_build and not self._quit_when_built:
            await self.build_panes(self.panes_to_build[0][0])
            self.call_after_refresh(self._build_next_pane_out_of_sight)
        elif self._freeze_when_built:
            # Each full collection walked every object of the four panes again: 150-230 ms, about
            # one in ten Data pane jumps, which set that jump's p95. Frozen, none walks them.
            self._freeze_when_built = False
            gc.collect(1)  # the young garbage first: once frozen it would stay for good
            gc.freeze()

    async def build_panes(self, *names: str) -> None:
        """Wait until the panes ``names`` exist, building those still to build (a run started,
        or a checkpoint opened in Chat, can ask for a pane before its turn comes)."""
        for name in names:
            if name in self.pane_mounted:
                await self.pane_mounted[name].wait()
                continue
            build = dict(self.panes_to_build).get(name)
            if build is None:
                continue  # built with the first frame, or already
            self.panes_to_build = [(pane, b) for pane, b in self.panes_to_build if pane != name]
            self.pane_mounted[name] = done = asyncio.Event()
            try:
                await self.query_one(TabbedContent).get_pane(name).mount(build())
            except MountError:
                return  # the app is closing already
            finally:
                done.set()
                if self._quit_when_built:
                    self.exit()
            if self.query_one(TabbedContent).active == name:
                self.action_show_pane(name)  # chosen while it was being built: focus it now

    async def _shutdown(self) -> None:
        # Closed from outside its message loop (as Textual's run_test does), the App could prune
        # a pane still being built: its widgets then fail in their own on_mount. Let it finish.
        for done in list(self.pane_mounted.values()):
            await done.wait()
        await super()._shutdown()

    @on(ServingToggled)
    def _serving_toggled(self, message: ServingToggled) -> None:
        self.serving.toggle(message.checkpoint)

    @on(ServingChanged)
    def _serving_changed(self, message: ServingChanged) -> None:
        self.query_one("#checkpoints-pane").show_serving(message.url, message.label, message.error)
        for pane in self.query("#training-pane"):  # it may still be waiting its turn to be built
            pane.set_serving(message.url, self.clock())

    @on(FormBuilt)
    def _form_built(self) -> None:
        if self.first_pane == "hyperparameters":
            self.call_after_refresh(self._build_next_pane_out_of_sight)

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, lambda theme: save_setting("theme", theme.name))
        for problem in self.theme_problems:
            self.notify(problem, title="Theme skipped", severity="error", timeout=30)
        apply_user_keymap(self)
        if self.watch_target is not None:
            self._attach_watch_target(self.watch_target)
        elif self.first_run is not None:
            self.follow(self.first_run)
        self.action_show_pane(self.first_pane)
        self.call_after_refresh(self._first_frame_drawn)
        # The form comes a group per frame; the other panes are built after it (FormBuilt).
        if self.first_pane != "hyperparameters":
            self.call_after_refresh(self._build_next_pane_out_of_sight)

    @staticmethod
    def _first_frame_drawn() -> None:
        """Turn garbage collection on again, if ``open_app`` turned it off for the start-up.

        What the start-up made (Textual's modules, the styles, the first widgets) lives as long
        as the app: frozen, no collection walks it again, so none takes longer for it."""
        if not gc.isenabled():
            gc.freeze()
            gc.enable()

    def _attach_watch_target(self, target: str) -> None:
        path = Path(target)
        if target != "-" and RunDirectory(path).exists():
            self.runs_root = path.resolve().parent
            self.follow(RunDirectory(path))
        else:
            self.query_one("#training-pane").follow("stdin" if target == "-" else path.name, "following")
            self._follow_log(target)

    # -- keys and commands -------------------------------------------------------------------
    async def action_quit(self) -> None:
        """Quit, but never in the middle of building a pane.

        Once exit is asked for, Textual mounts nothing more, so a pane half built would have
        widgets without their children, whose own on_mount then fails (a traceback on the way
        out). The pane in flight finishes (tenths of a second), no other is started, then the
        App exits; this handler returns at once, so the App keeps handling its messages.
        """
        if any(not done.is_set() for done in self.pane_mounted.values()):
            self._quit_when_built = True
            return
        if self.serving.server is not None:
            # The App owns the server: it never outlives the App, and the user is told it stopped.
            url = self.serving.url or "(still starting)"
            self.notify(f"stopping the model server at {url}")
            self.serving.stop()
            self.exit(message=f"tunedeck: stopped the model server at {url}")
            return
        self.exit()

    def action_show_pane(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane
        for widget in self.query(f"#{pane}-pane"):  # absent for a moment after the first frame
            widget.focus_main()

    def action_leave_field(self) -> None:
        """To the pane tabs (from a text field, say), where digits choose panes again."""
        self.query_one(TabbedContent).query_one(Tabs).focus()

    def action_toggle_theme(self) -> None:
        names = [t.name for t in self.own_themes]
        self.theme = names[(names.index(self.theme) + 1) % len(names)] if self.theme in names else names[0]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        textual_commands = list(super().get_system_commands(screen))
        yield from textual_commands
        yield from binding_commands(self, screen, taken=textual_commands)

    # -- following a run or a log --------------------------------------------------------------
    def follow(self, run: RunDirectory) -> None:
        self.followed, self.overlaid = run, None
        self.query_one("#training-pane").follow(run.name, run.state())
        self.query_one("#checkpoints-pane").show(run.name, [], self.clock())
        self._follow_run(run)

    @work(thread=True, exclusive=True, exit_on_error=False, group="follow")
    def _follow_run(self, run: RunDirectory) -> None:
        from tunedeck.core.run_follower import Handover, RunFollower

        worker = get_current_worker()
        handover = Handover()
        for update in RunFollower(run).updates(lambda: worker.is_cancelled):
            if handover.give(update):
                self.post_message(RunUpdated(str(run.path), update))

    @work(thread=True, exclusive=True, exit_on_error=False, group="follow")
    def _follow_log(self, target: str) -> None:
        from tunedeck.core.log_follower import follow_log_file, follow_pipe
        from tunedeck.core.run_follower import Handover

        worker = get_current_worker()
        handover = Handover()
        cancelled = lambda: worker.is_cancelled  # noqa: E731
        if target == "-":
            updates = follow_pipe(self.pipe_fd if self.pipe_fd is not None else 0, POLL_S, cancelled)
        else:
            updates = follow_log_file(Path(target), cancelled)
        for update in updates:
            if handover.give(update):
                self.post_message(RunUpdated(target, update))

    @on(RunUpdated)
    def _run_updated(self, message: RunUpdated) -> None:
        expected = str(self.followed.path) if self.followed else self.watch_target
        if message.source != expected:
            return  # the last words of a follower that was replaced
        now = self.clock()
        update = message.update.take()
        training = self._mounted_pane("training-pane")
        if training is not None:
            training.add_update(update, live=not update.backlog, now=now)
        if update.checkpoints is not None and self.followed is not None:
            checkpoints = self._mounted_pane("checkpoints-pane")
            if checkpoints is not None:
                checkpoints.show(self.followed.name, update.checkpoints, now)

    def _mounted_pane(self, pane_id: str):
        """The pane with this id while it is mounted, else None (a follower's last update can land
        while the App quits and its panes are gone). Found once: a query walks the whole screen,
        which per report of a fast run was a tenth of the App's time for it."""
        pane = self._found_panes.get(pane_id)
        if pane is None or not pane.is_attached:  # type: ignore[attr-defined]
            pane = next(iter(self.query(f"#{pane_id}")), None)
            if pane is None:
                return None
            self._found_panes[pane_id] = pane
        return pane

    @on(RunSwitchRequested)
    def _switch_run(self, message: RunSwitchRequested) -> None:
        runs = find_runs(self.runs_root) if self.runs_root else []
        if not runs:
            self.notify("no runs in this project yet", severity="warning")
            return
        paths = [r.path for r in runs]
        here = paths.index(self.followed.path) if self.followed and self.followed.path in paths else -1
        self.follow(runs[(here + message.step) % len(runs)])

    @on(OverlayRequested)
    def _next_overlay(self) -> None:
        others = [r for r in (find_runs(self.runs_root) if self.runs_root else [])
                  if not self.followed or r.path != self.followed.path]
        if not others:
            self.notify("no other run to compare with", severity="warning")
            return
        paths = [r.path for r in others]
        here = paths.index(self.overlaid.path) if self.overlaid and self.overlaid.path in paths else -1
        if here == len(others) - 1:
            self.overlaid = None
            self.query_one("#training-pane").show_overlay(None, "")
            return
        self.overlaid = others[here + 1]
        self._load_overlay(self.overlaid)

    @work(thread=True, exclusive=True, exit_on_error=False, group="overlay")
    def _load_overlay(self, run: RunDirectory) -> None:
        from tunedeck.core.checkpoints import current_history, run_events
        from tunedeck.core.run_history import Series

        _, train = current_history(run_events(run))
        series = Series()
        for iteration in sorted(train):
            series.add(iteration, train[iteration])
        self.post_message(OverlayLoaded(run.name, series))

    @on(OverlayLoaded)
    def _overlay_loaded(self, message: OverlayLoaded) -> None:
        self.query_one("#training-pane").show_overlay(message.train, message.label)

    # -- starting, stopping, resuming ---------------------------------------------------------
    @on(StartRequested)
    def _start_requested(self, message: StartRequested) -> None:
        if self.runs_root is None:
            self.notify("open a project to start runs (tunedeck PROJECT_DIR)", severity="error")
            return
        self.notify("starting the run…")
        self._start_run(message.config, message.source_text, self.runs_root)

    @work(thread=True, exclusive=True, exit_on_error=False, group="start")
    def _start_run(self, config, source_text: Optional[str], root: Path) -> None:
        from tunedeck.core.runs import start_run

        run, _ = start_run(config, root=root, source_text=source_text)
        self.post_message(RunStarted(run.path))

    @on(RunStarted)
    async def _run_started(self, message: RunStarted) -> None:
        await self.build_panes("training", "checkpoints")
        run = RunDirectory(message.run_path)
        if self.followed is None or self.followed.path != run.path:
            self.follow(run)
        self.notify(f"training in {run.path} (it goes on if you quit)")
        self.action_show_pane("training")

    @on(StopRequested)
    def _stop_requested(self, message: StopRequested) -> None:
        run = self.followed
        if run is None or run.state() not in ("starting", "running"):
            self.notify("no running run to stop", severity="warning")
            return
        pane = self.query_one("#training-pane")
        note = "stopping after the next checkpoint" if message.after_checkpoint else "stopping…"
        pane.set_note(note, self.clock())
        self._stop_run(run, message.after_checkpoint)

    @work(thread=True, exclusive=True, exit_on_error=False, group="stop")
    def _stop_run(self, run: RunDirectory, after_checkpoint: bool) -> None:
        from tunedeck.core.runs import stop_run

        outcome = stop_run(run, after_checkpoint=after_checkpoint)
        self.post_message(RunStopped(run.path, outcome))

    @on(RunStopped)
    def _run_stopped(self, message: RunStopped) -> None:
        self.notify(f"{message.run_path.name}: {message.outcome}")

    @on(ResumeRequested)
    def _resume_requested(self, message: ResumeRequested) -> None:
        if self.followed is None:
            return
        what = f"extending to {message.iters} iterations" if message.iters else "resuming"
        self.notify(f"{what} from checkpoint {message.checkpoint.iteration}…")
        self._resume_run(self.followed, message.checkpoint.iteration, message.iters)

    @work(thread=True, exclusive=True, exit_on_error=False, group="start")
    def _resume_run(self, run: RunDirectory, iteration: int, iters: Optional[int]) -> None:
        from tunedeck.core.runs import resume_run

        resume_run(run, checkpoint=str(iteration), iters=iters)
        self.post_message(RunStarted(run.path))

    @on(SlowerResumeRequested)
    def _slower_resume_requested(self, message: SlowerResumeRequested) -> None:
        if self.followed is None:
            return
        self.notify(f"resuming from checkpoint {message.checkpoint} with learning_rate "
                    f"{message.learning_rate:g}…")
        self._resume_with_new_rate(self.followed, message.checkpoint, message.learning_rate)

    @work(thread=True, exclusive=True, exit_on_error=False, group="start")
    def _resume_with_new_rate(self, run: RunDirectory, iteration: int, learning_rate: float) -> None:
        from tunedeck.core.runs import resume_with_new_rate

        resume_with_new_rate(run, iteration, learning_rate)
        self.post_message(RunStarted(run.path))

    @on(WarmStartRequested)
    async def _warm_start(self, message: WarmStartRequested) -> None:
        if self.followed is None:
            return
        await self.build_panes("hyperparameters")
        pane = self.query_one(HyperparametersPane)
        if pane.warm_start_from(self.followed, message.checkpoint):
            self.action_show_pane("hyperparameters")

    @on(ChatRequested)
    async def _chat_requested(self, message: ChatRequested) -> None:
        if self.followed is None:
            return
        await self.build_panes("chat")
        model = self.followed.read_status().get("model")
        self.query_one("#chat-pane").use(model, message.checkpoint.path)
        self.action_show_pane("chat")

    @on(DeleteRequested)
    def _delete_requested(self, message: DeleteRequested) -> None:
        if self.followed is not None:
            self._delete_checkpoint(self.followed, message.checkpoint.iteration)

    @work(thread=True, exclusive=False, exit_on_error=False, group="delete")
    def _delete_checkpoint(self, run: RunDirectory, iteration: int) -> None:
        from tunedeck.core.checkpoints import delete_checkpoint

        delete_checkpoint(run, iteration)

    # -- worker errors, in one place -------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, (BadInput, WorkFailed)):
            text = str(error)
        else:
            text = f"{type(error).__name__}: {error}"
        if event.worker.group == "stop":
            self.query_one("#training-pane").set_note("", self.clock())
        self.notify(text, title="could not do it", severity="error", timeout=12)


def _reattach_terminal_for_stdin() -> int:
    """For ``tunedeck watch -``: keep the pipe on another descriptor, give the app the terminal.

    Textual reads keys from standard input; when that is the pipe carrying mlx-lm's output, the
    terminal is reopened as standard input and the pipe is read from the returned descriptor.
    """
    pipe = os.dup(0)
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        os.close(pipe)
        raise WorkFailed("watch -: no terminal to show the app on (/dev/tty cannot be opened)")
    os.dup2(tty, 0)
    os.close(tty)
    sys.stdin = open(0, "r", closefd=False)
    return pipe


def run_app(project: Optional[Path] = None, watch: Optional[str] = None) -> int:
    pipe_fd = _reattach_terminal_for_stdin() if watch == "-" and not os.isatty(0) else None
    TunedeckApp(project=project, watch=watch, pipe_fd=pipe_fd).run()
    return 0
