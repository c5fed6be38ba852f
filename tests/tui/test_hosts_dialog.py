"""The Hosts helper: the ranks a config trains on, and a hostfile written when asked."""

from __future__ import annotations

import sys
from pathlib import Path

from textual.app import App
from textual.widgets import Input, Static
from textual.worker import WorkerCancelled

from tests.tui.harness import APP_CSS
from tunedeck.core.config import TrainConfig
from tunedeck.tui.panes.hyperparameters import hosts_dialog
from tunedeck.tui.panes.hyperparameters.hosts_dialog import HostsDialog


class DialogApp(App):
    CSS_PATH = str(APP_CSS)

    def __init__(self, dialog):
        super().__init__()
        self.dialog = dialog
        self.result = "not yet"

    def on_mount(self) -> None:
        self.push_screen(self.dialog, lambda value: setattr(self, "result", value))


async def test_the_helper_shows_each_rank_of_the_config(tmp_path):
    app = DialogApp(HostsDialog(TrainConfig(ranks=2), tmp_path / "hosts.json"))
    async with app.run_test() as pilot:
        await pilot.pause()
        layout = str(app.screen.query_one("#layout", Static).render())
        assert layout.splitlines() == ["2 ranks, backend ring",
                                       "rank 0: this machine, reached at 127.0.0.1",
                                       "rank 1: this machine, reached at 127.0.0.1"]
        assert "no hostfile" in str(app.screen.query_one("#hostfile", Static).render())
        await pilot.press("escape")
        await pilot.pause()
    assert app.result is None


async def test_a_thunderbolt_hostfile_is_written_when_asked_and_handed_to_the_form(tmp_path,
                                                                                  monkeypatch):
    asked = []

    def command(hosts, hostfile, backend):
        # mlx.distributed_config needs the Macs themselves; this one writes what it would.
        asked.append((hosts, backend))
        return [sys.executable, "-c", f"open({str(hostfile)!r}, 'w').write('[]')"]

    monkeypatch.setattr(hosts_dialog, "thunderbolt_config_command", command)
    hostfile = tmp_path / "hosts.json"
    app = DialogApp(HostsDialog(TrainConfig(hosts="mac1,mac2"), hostfile))
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.screen.query_one("#mesh", Input).value == "mac1,mac2"
        await pilot.press("ctrl+t")
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # the dialog dismissed itself from the worker's last line, which ends it
        await pilot.pause()
    assert asked == [(["mac1", "mac2"], "ring")]
    assert app.result == str(hostfile) and Path(app.result).read_text() == "[]"
