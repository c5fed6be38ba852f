"""The quiet terminal driver: its input thread sleeps while nobody types, and the terminal's input
still arrives whole (keys, a lone Esc, mouse, paste, resize), ctrl+z suspends and resumes, and
exit stops it. A small app runs in a real pseudo-terminal and writes each event it gets to a
file; the bytes a terminal sends are written to the terminal's side."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tunedeck.tui.driver import QuietLinuxDriver, terminal_driver

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a Linux/macOS terminal driver")

APP = textwrap.dedent("""
    import sys
    from textual import events
    from textual.app import App
    from textual.drivers.linux_driver import LinuxDriver
    from tunedeck.tui.driver import QuietLinuxDriver

    log = open(sys.argv[2], "a", buffering=1)

    class Events(App):
        BINDINGS = [("ctrl+z", "suspend_process")]

        def on_key(self, event):
            log.write(f"key {event.key}\\n")

        def on_mouse_down(self, event):
            log.write(f"mouse {event.screen_x},{event.screen_y}\\n")

        def on_paste(self, event):
            log.write(f"paste {event.text}\\n")

        def on_resize(self, event):
            log.write(f"size {event.size.width}x{event.size.height}\\n")

    driver = QuietLinuxDriver if sys.argv[1] == "quiet" else LinuxDriver
    Events(driver_class=driver).run()
    log.write("exited\\n")
""")
DEADLINE_S = 60.0  # generous: the machine is shared
# Exported by some shell setups (and by pytest-xdist in its workers), these win over the
# terminal's size in Textual's driver, which then never follows a resize.
SHELL_SIZE = {"COLUMNS": "80", "LINES": "24"}


class Terminal:
    """The app in a pseudo-terminal of 80x24, its event log, and the terminal's side."""

    def __init__(self, tmp_path: Path, driver: str):
        self.log = tmp_path / "events.log"
        self.log.touch()
        script = tmp_path / "app.py"
        script.write_text(APP)
        self.master, slave = pty.openpty()
        self.resize(80, 24, slave)
        self.process = subprocess.Popen([sys.executable, str(script), driver, str(self.log)],
                                        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                        env={**os.environ, "TERM": "xterm-256color", **SHELL_SIZE})
        os.close(slave)
        self.screen = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # The terminal is read all along: a full pty would block the app's writes.
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            self.screen.extend(data)

    def resize(self, width: int, height: int, fd: int | None = None) -> None:
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", height, width, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_for(self, line: str) -> list[str]:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            lines = self.log.read_text().splitlines()
            if line in lines:
                return lines
            time.sleep(0.05)
        raise AssertionError(f"no {line!r} within {DEADLINE_S} s; the app got: {self.log.read_text()}")

    def state(self) -> str:
        text = Path(f"/proc/{self.process.pid}/stat").read_text()
        return text[text.rindex(")") + 2]

    def wakeups(self) -> int:
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        return total

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait()
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path):
    opened = []

    def open_terminal(driver: str = "quiet") -> Terminal:
        opened.append(Terminal(tmp_path, driver))
        opened[-1].wait_for("size 80x24")
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts wake-ups in /proc")
@pytest.mark.parametrize("driver, most", [("textual", None), ("quiet", 2)])
def test_an_app_nobody_types_to_sleeps(terminal, driver, most):
    """Textual's driver wakes ten times a second to read nothing (checked, so the count is seen
    to see it); the quiet one not at all, beyond a stray wake-up or two of the process."""
    term = terminal(driver)
    term.send(b"a")  # something read, then nothing: the wait after input ends too
    term.wait_for("key a")
    time.sleep(0.5)  # the escape delay after the key is over (0.1 s)
    before = term.wakeups()
    time.sleep(2.0)  # a window to count in: there is nothing to wait for
    woken = term.wakeups() - before
    if most is None:
        assert woken >= 10, woken
    else:
        assert woken <= most, woken


def test_keys_a_lone_escape_mouse_paste_and_resize_arrive(terminal):
    term = terminal()
    term.send(b"x\x1b[A")  # a letter and the up arrow's sequence
    term.wait_for("key up")
    # A lone Esc is told from a sequence's start only by the time after it: the thread must wake
    # up for the parser's timeout although no further input comes.
    term.send(b"\x1b")
    term.wait_for("key escape")
    term.send(b"\x1b[<0;10;5M\x1b[<0;10;5m")  # a click at column 10, row 5 (SGR)
    term.wait_for("mouse 9,4")
    term.send(b"\x1b[200~pasted text\x1b[201~")
    term.wait_for("paste pasted text")
    term.resize(100, 30)
    os.killpg(term.process.pid, signal.SIGWINCH)
    term.wait_for("size 100x30")
    assert "key x" in term.log.read_text().splitlines()


@pytest.mark.parametrize("driver", ["textual", "quiet"])
def test_ctrl_z_suspends_and_the_app_reads_keys_after_resuming(terminal, driver):
    term = terminal(driver)
    term.send(b"\x1a")  # ctrl+z
    deadline = time.monotonic() + DEADLINE_S
    while term.state() != "T" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert term.state() == "T", "ctrl+z did not suspend the app"
    os.killpg(term.process.pid, signal.SIGCONT)  # what `fg` sends
    term.send(b"b")
    term.wait_for("key b")


def test_ctrl_q_exits_and_the_terminal_is_given_back(terminal):
    term = terminal()
    term.send(b"\x11")  # ctrl+q
    term.wait_for("exited")
    assert term.process.wait(timeout=DEADLINE_S) == 0
    # Leaving the alternate screen is the last thing the driver writes.
    deadline = time.monotonic() + DEADLINE_S
    while b"\x1b[?1049l" not in term.screen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"\x1b[?1049l" in term.screen


def test_the_quiet_driver_replaces_textuals_terminal_driver_only():
    from textual.drivers.headless_driver import HeadlessDriver
    from textual.drivers.linux_driver import LinuxDriver
    from textual.drivers.web_driver import WebDriver

    assert terminal_driver(LinuxDriver) is QuietLinuxDriver
    assert terminal_driver(WebDriver) is WebDriver
    assert terminal_driver(HeadlessDriver) is HeadlessDriver
