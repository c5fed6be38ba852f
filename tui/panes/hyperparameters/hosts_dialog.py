"""The Hosts helper: which ranks the form's config trains on, the hostfile behind them, and, for
a Thunderbolt mesh, ``mlx.distributed_config`` writing that hostfile when asked."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tunedeck.core.distributed import describe_layout, thunderbolt_config_command

from ...widgets.dialogs import DialogBox


class HostsDialog(ModalScreen[Optional[str]]):
    """Dismissed with the path of a hostfile it wrote (for the form's ``hosts``), or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close", id="close-hosts"),
        Binding("ctrl+t", "configure", "Thunderbolt hostfile", id="thunderbolt-hostfile"),
    ]

    def __init__(self, config, hostfile: Path):
        super().__init__()
        self.config = config
        self.hostfile = hostfile  # where mlx.distributed_config writes, when asked

    def compose(self) -> ComposeResult:
        with DialogBox():
            yield Label("Hosts", classes="question")
            yield Static(Text("\n".join(describe_layout(self.config))), id="layout")
            yield Static(Text(self._hostfile_text()), id="hostfile")
            yield Label(Text("ctrl+t: find the Thunderbolt links between these ssh hosts and "
                             f"write {self.hostfile} (mlx.distributed_config):"))
            yield Input(self._remote_hosts(), placeholder="mac1,mac2,mac3", id="mesh")
            yield Static("", id="output", classes="problem")

    def _hostfile_text(self) -> str:
        hosts = self.config.hosts or ""
        path = Path(hosts).expanduser()
        if hosts and path.is_file():
            return f"{path}:\n{path.read_text(errors='replace').strip()}"
        return "no hostfile" + (f" (hosts = {hosts})" if hosts else "")

    def _remote_hosts(self) -> str:
        hosts = self.config.hosts or ""
        return hosts if hosts and not Path(hosts).expanduser().is_file() else ""

    def action_configure(self) -> None:
        hosts = [h.strip() for h in self.query_one("#mesh", Input).value.split(",") if h.strip()]
        if len(hosts) < 2:
            self._show("name at least two ssh hosts, this machine first")
            return
        self._show(f"running mlx.distributed_config over ssh to {', '.join(hosts)}…")
        self._configure(thunderbolt_config_command(hosts, self.hostfile, self.config.backend))

    @on(Input.Submitted, "#mesh")
    def _submitted(self) -> None:
        self.action_configure()

    @work(thread=True, exclusive=True, exit_on_error=False, group="hosts")
    def _configure(self, command: list[str]) -> None:
        try:
            done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.app.call_from_thread(self._show, f"mlx.distributed_config: {exc}")
            return
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        if done.returncode != 0 or not self.hostfile.is_file():
            self.app.call_from_thread(
                self._show, f"mlx.distributed_config failed: {said[-1] if said else done.returncode}")
            return
        self.app.call_from_thread(self.dismiss, str(self.hostfile))

    def _show(self, message: str) -> None:
        self.query_one("#output", Static).update(Text(message))
