"""The list of a run's health findings (core.health, core.probes): a small modal screen that the
Training pane opens with its ``health-findings`` key."""

from __future__ import annotations

from typing import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tunedeck.core.checkpoints import finding_line
from tunedeck.core.events import Health

SEVERITY_VARIABLE = {"bad": "error", "warn": "warning"}


def finding_content(finding: Health) -> Content:
    """A finding in one line, its iteration, severity and issue in the severity's colour."""
    head, _, rest = finding_line(finding).partition(": ")
    colour = SEVERITY_VARIABLE.get(finding.severity, "warning")
    return Content.from_markup(f"[${colour}]$head[/]: $rest", head=head, rest=rest)


class HealthFindings(ModalScreen[None]):
    """Every finding of the run, the newest first."""

    DEFAULT_CSS = """
    HealthFindings VerticalScroll { height: auto; max-height: 30; }
    HealthFindings .finding { margin-bottom: 1; }
    """
    BINDINGS = [Binding("escape,h", "dismiss", "Close", id="close-health-findings")]

    def __init__(self, run_name: str, findings: Sequence[Health]):
        super().__init__()
        self.run_name = run_name
        self.findings = list(findings)

    def compose(self) -> ComposeResult:
        # Wider than the app's other dialogs (app.tcss sizes .dialog): findings are long lines.
        with Vertical(classes="dialog") as dialog:
            dialog.styles.width = "90%"
            count = len(self.findings)
            yield Label(Content(f"{count} health finding{'s' if count != 1 else ''} "
                                f"of {self.run_name}, newest first"), classes="question")
            with VerticalScroll(id="health-findings-list"):
                for finding in reversed(self.findings):
                    yield Static(finding_content(finding), classes="finding")
