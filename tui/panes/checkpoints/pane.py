"""The Checkpoints pane: the checkpoint index of the followed run, and what to do with one."""

from __future__ import annotations

import time
from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from tunedeck.core.checkpoints import Checkpoint
from tunedeck.core.probes import recorded_checks
from tunedeck.core.text import loss_text

from ...messages import (ChatRequested, DeleteRequested, EvaluationRequested, ResumeRequested, ServingToggled,
                         WarmStartRequested)
from ...widgets.dialogs import AskIterations, Confirm
from ...widgets.severity import SEVERITY_VARIABLE
from .export_dialog import ExportDialog

COLUMNS = ("iter", "val loss", "train loss", "size", "age", "resume", "best", "health")
AGE_REFRESH_S = 5.0
# A long reason would widen the table past the screen; the rest is in the Training pane's list.
HEALTH_WIDTH = 48


def size_text(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"


class CheckpointBrowser(DataTable):
    """One row per numbered checkpoint, the newest last, the best one marked.

    The cursor starts on the best checkpoint (the one a user most likely wants to chat with,
    evaluate or export), and then stays on whatever the user selected.
    """

    DEFAULT_CSS = "CheckpointBrowser { height: 1fr; }"

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.checkpoints: list[Checkpoint] = []
        self._chosen = False  # the user moved the cursor: keep it where they put it
        self._moving = False

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column, key=column)

    def show(self, checkpoints: list[Checkpoint], now: float) -> None:
        selected = self.selected() if self._chosen else None
        self._moving = True  # clearing and refilling moves the cursor too: not the user's doing
        self.checkpoints = checkpoints
        # The answer checks' cost, from their files beside the checkpoints (a run with
        # answer_checks off has none).
        checks = recorded_checks(checkpoints[0].path.parent) if checkpoints else {}
        self.clear()
        for c in checkpoints:
            self.add_row(
                Text(str(c.iteration), justify="right"),
                Text(loss_text(c.val_loss, missing="—"), justify="right"),
                Text(loss_text(c.train_loss, missing="—"), justify="right"),
                Text(size_text(c.size_bytes), justify="right"),
                Text(age_text(now - c.saved_at)),
                Text("exact" if c.resumable else "weights only"),
                Text("★ best" if c.best else ""),
                self._health_text(c, checks.get(c.iteration)),
                key=str(c.iteration))
        rows = [c.iteration for c in checkpoints]
        best = next((c.iteration for c in checkpoints if c.best), None)
        keep = selected.iteration if selected else best
        if rows:
            self.move_cursor(row=rows.index(keep) if keep in rows else len(rows) - 1)
        self._moving = False

    def _health_text(self, c: Checkpoint, check=None) -> Text:
        """ok, or the answer checks' severity and reason in the theme's colour for it; what the
        check cost when one ran (before the reason, which may be cut short)."""
        label = c.health_label
        if check is not None:
            head, colon, reason = label.partition(": ")
            label = f"{head} · check {check.seconds:.1f} s{colon}{reason}"
        if len(label) > HEALTH_WIDTH:
            label = label[:HEALTH_WIDTH - 1] + "…"
        if c.health == "ok":
            return Text(label)
        colour = self.app.theme_variables.get(SEVERITY_VARIABLE.get(c.health, "warning"))
        return Text(label, style=colour or "")

    def forget_choice(self) -> None:
        self._chosen = False

    def refresh_ages(self, now: float) -> None:
        """Each row's age from its own file's time, as of ``now``."""
        for c in self.checkpoints:
            self.update_cell(str(c.iteration), "age", Text(age_text(now - c.saved_at)))

    def watch_cursor_coordinate(self, old, new) -> None:
        super().watch_cursor_coordinate(old, new)
        if not self._moving and old != new:
            self._chosen = True

    def selected(self) -> Optional[Checkpoint]:
        if not self.checkpoints or self.cursor_row < 0 or self.cursor_row >= len(self.checkpoints):
            return None
        return self.checkpoints[self.cursor_row]


class CheckpointsPane(Vertical):
    DEFAULT_CSS = """
    CheckpointsPane #checkpoints-of, CheckpointsPane #checkpoints-hint { padding: 0 1; color: $text-muted; }
    """
    PANE_TITLE = "Checkpoints"
    BINDINGS = [
        Binding("r", "resume", "Resume", id="resume-checkpoint"),
        Binding("w", "warm_start", "Warm start", id="warm-start-checkpoint"),
        Binding("e", "extend", "Extend", id="extend-checkpoint"),
        Binding("c", "chat", "Chat", id="chat-checkpoint"),
        Binding("v", "evaluate", "Eval", id="evaluate-checkpoint"),
        Binding("d", "delete", "Delete", id="delete-checkpoint"),
        Binding("x", "export", "Export", id="export-checkpoint"),
        Binding("s", "serve", "Serve", id="serve-checkpoint"),
    ]

    _run_name: Optional[str] = None

    def compose(self) -> ComposeResult:
        yield Label("no run", id="checkpoints-of")
        yield CheckpointBrowser(id="checkpoint-table")
        yield Label("", id="checkpoints-hint")
        yield Label("", id="checkpoints-serving")

    def focus_main(self) -> None:
        self.query_one(CheckpointBrowser).focus()

    def on_mount(self) -> None:
        # Ages move on while the pane is open; each row's comes from its own file's time. Out of
        # sight the timer sleeps: it woke an app following a quiet run for nothing.
        self._ages_clock = self.set_interval(AGE_REFRESH_S, self._refresh_ages, pause=not self.is_on_screen)

    def on_show(self) -> None:
        self._refresh_ages()  # what the ages moved while out of sight
        self._ages_clock.resume()

    def on_hide(self) -> None:
        self._ages_clock.pause()

    def _refresh_ages(self) -> None:
        self.query_one(CheckpointBrowser).refresh_ages(getattr(self.app, "clock", time.time)())

    def show(self, run_name: str, checkpoints: list[Checkpoint], now: float) -> None:
        browser = self.query_one(CheckpointBrowser)
        if run_name != self._run_name:
            browser.forget_choice()
            self._run_name = run_name
        self.query_one("#checkpoints-of", Label).update(Text(f"checkpoints of {run_name}"))
        browser.show(checkpoints, now)
        hint = "" if checkpoints else "no checkpoint yet: one is saved every save_every iterations"
        self.query_one("#checkpoints-hint", Label).update(hint)

    def _selected(self) -> Optional[Checkpoint]:
        checkpoint = self.query_one(CheckpointBrowser).selected()
        if checkpoint is None:
            self.notify("no checkpoint selected", severity="warning")
        return checkpoint

    def action_resume(self) -> None:
        if (c := self._selected()) is not None:
            if not c.resumable:
                self.notify(f"checkpoint {c.iteration} has no resume state: warm start a new run "
                            "from it instead (w)", severity="warning")
                return
            self.post_message(ResumeRequested(c))

    def action_warm_start(self) -> None:
        if (c := self._selected()) is not None:
            self.post_message(WarmStartRequested(c))

    def action_extend(self) -> None:
        c = self._selected()
        if c is None:
            return
        if not c.resumable:
            self.notify(f"checkpoint {c.iteration} has no resume state", severity="warning")
            return

        def extend(iters: Optional[str]) -> None:
            if iters is not None:
                self.post_message(ResumeRequested(c, iters=int(iters)))

        self.app.push_screen(AskIterations(
            f"Continue from checkpoint {c.iteration} up to how many iterations in all?",
            minimum=c.iteration + 1), extend)

    def action_chat(self) -> None:
        if (c := self._selected()) is not None:
            self.post_message(ChatRequested(c))

    def action_evaluate(self) -> None:
        if (c := self._selected()) is not None:
            self.post_message(EvaluationRequested(c))

    def action_export(self) -> None:
        if (c := self._selected()) is not None:
            self.app.push_screen(ExportDialog(c, self._run_name or c.path.parent.parent.name))

    def action_serve(self) -> None:
        """Start serving the selected checkpoint, or stop the server (the App owns it)."""
        if (c := self._selected()) is not None:
            self.post_message(ServingToggled(c))

    def show_serving(self, url: Optional[str], label: str, error: Optional[str] = None) -> None:
        """What the App's server is doing, under the table."""
        if error:
            text = f"serving failed: {error}"
        elif url:
            text = f"serving {label} at {url} (model default_model) · s stops it"
        else:
            text = ""
        self.query_one("#checkpoints-serving", Label).update(Text(text))

    def action_delete(self) -> None:
        c = self._selected()
        if c is None:
            return

        def delete(confirmed: Optional[bool]) -> None:
            if confirmed:
                self.post_message(DeleteRequested(c))

        self.app.push_screen(Confirm(
            f"Delete checkpoint {c.iteration} ({size_text(c.size_bytes)}) and its resume state? "
            "This cannot be undone.", confirm="Delete"), delete)

