"""The list of a run's health findings (core.health, core.probes): a small modal screen that the
Training pane opens with its ``health-findings`` key. While a diverging finding offers a resume
with half the learning rate, the list says so and its ``r`` takes it (the pane asks to confirm)."""

from __future__ import annotations

from typing import Optional, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tunedeck.core.checkpoints import finding_line
from tunedeck.core.events import Health
from tunedeck.core.health import ResumeOffer

from ...widgets.dialogs import DialogBox
from ...widgets.severity import SEVERITY_VARIABLE

def finding_content(finding: Health) -> Content:
    """A finding in one line, its iteration, severity and issue in the severity's colour."""
    head, _, rest = finding_line(finding).partition(": ")
    colour = SEVERITY_VARIABLE.get(finding.severity, "warning")
    return Content.from_markup(f"[${colour}]$head[/]: $rest", head=head, rest=rest)


class HealthFindings(ModalScreen[Optional[str]]):
    """Every finding of the run, the newest first; dismissed with "resume" when the offer is taken."""

    DEFAULT_CSS = """
    HealthFindings VerticalScroll { height: auto; max-height: 30; }
    HealthFindings .finding { margin-bottom: 1; }
    """
    BINDINGS = [Binding("escape,h", "dismiss", "Close", id="close-health-findings"),
                Binding("r", "dismiss('resume')", "Resume ½ lr", id="findings-resume-half-rate")]

    def __init__(self, run_name: str, findings: Sequence[Health], offer: Optional[ResumeOffer] = None,
                 checks: Optional[dict] = None):
        super().__init__()
        self.run_name = run_name
        self.findings = list(findings)
        self.offer = offer
        self.checks = checks or {}  # core.probes.recorded_checks: the answer checks that ran

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if action == "dismiss" and parameters == ("resume",):
            return self.offer is not None
        return True

    def compose(self) -> ComposeResult:
        # Wider than the app's other dialogs (app.tcss sizes .dialog): findings are long lines.
        with DialogBox() as dialog:
            dialog.styles.width = "90%"
            count = len(self.findings)
            yield Label(Content(f"{count} health finding{'s' if count != 1 else ''} "
                                f"of {self.run_name}, newest first"), classes="question")
            if self.checks:
                done = " · ".join(f"{i} {self.checks[i].summary}" for i in sorted(self.checks))
                yield Label(Content(f"answer checks by checkpoint: {done}"), id="answer-checks")
            if self.offer is not None:
                yield Label(Content.from_markup(
                    "[$accent]r[/] resume from checkpoint $checkpoint with learning_rate $new "
                    "(now $old)", checkpoint=str(self.offer.checkpoint),
                    new=f"{self.offer.new_learning_rate:g}", old=f"{self.offer.learning_rate:g}"),
                    id="resume-offer")
            with VerticalScroll(id="health-findings-list"):
                for finding in reversed(self.findings):
                    yield Static(finding_content(finding), classes="finding")
