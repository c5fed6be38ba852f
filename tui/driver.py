"""The terminal driver: Textual's own for Linux and macOS, with an input thread that sleeps until
there is something to read.

Textual's LinuxDriver reads the terminal in a thread that waits on ``select`` with a timeout of
0.1 s, for ever: ten wake-ups a second that read nothing, about 0.2 % of a core on a slow
machine, a third of what an app following a quiet run may cost (0.5 %). The timeout is there for
two things only: to notice ``exit_event`` (set when the app exits or is suspended), and to let
the key parser time out an escape sequence left unfinished (a lone Esc is told from the start of
an arrow key's sequence by the absence of a next character within ``ESCDELAY``).

This driver keeps both without the idle wake-ups: the thread waits on the terminal and on a
wake-up pipe, which ``exit_event.set()`` writes to, with no timeout, except in the moments after
input was read, when it waits as long as the parser may still time a sequence out.

``run_input_thread`` is a copy of Textual 8's loop with the wait changed (private API: keep it
small and compare it with ``textual/drivers/linux_driver.py`` when Textual is upgraded). Keys,
mouse, paste, resize (SIGWINCH, in the main thread) and ctrl+z are Textual's code unchanged; the
size is asked of the terminal itself (below).
"""

from __future__ import annotations

import os
import selectors
import sys
import time
import weakref
from codecs import getincrementaldecoder
from threading import Event
from typing import Type

from textual import constants
from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver

# After input, the wait lasts until the parser's escape timeout has passed, and a little more
# (select may return as the deadline is reached, a hair before the parser's own clock agrees).
AFTER_ESCAPE_DELAY_S = 0.01


class _WakingEvent(Event):
    """``exit_event`` that also wakes the input thread from its wait."""

    def __init__(self, wake_fd: int):
        super().__init__()
        self._wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        try:
            os.write(self._wake_fd, b"x")
        except OSError:
            pass  # the pipe is full (the thread will wake anyway) or closed with the driver


def _close_pipe(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class QuietLinuxDriver(LinuxDriver):
    """LinuxDriver whose input thread wakes up only for input, an escape timeout, or exit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.exit_event = _WakingEvent(self._wake_write)
        # The pipe lives as long as the driver: close() is also called to suspend (ctrl+z), and
        # the input thread started on resuming waits on the same pipe.
        weakref.finalize(self, _close_pipe, self._wake_read, self._wake_write)

    def _get_terminal_size(self) -> tuple[int, int]:
        """The terminal's own size. Textual asks ``shutil.get_terminal_size``, where COLUMNS and
        LINES win when they are exported (some shell setups do; pytest-xdist's workers have
        80x24): the app then never followed a resize of the window."""
        for stream in (self._file, sys.__stdin__):
            try:
                columns, lines = os.get_terminal_size(stream.fileno())
            except (AttributeError, ValueError, OSError):
                continue
            if columns and lines:
                return columns, lines
        return super()._get_terminal_size()

    def run_input_thread(self) -> None:
        """Wait for input and dispatch events (Textual's loop, with the wait of this module)."""
        selector = selectors.SelectSelector()  # as Textual: select() works with every tty
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        timed_out_by = 0.0  # when the parser has timed out anything the last input left pending

        def process(ready) -> None:
            nonlocal timed_out_by
            for key, _mask in ready:
                if key.fd == self._wake_read:
                    try:
                        os.read(self._wake_read, 512)
                    except BlockingIOError:
                        pass
                    continue
                data = decode(os.read(self.fileno, 1024 * 4))
                if not data:
                    break  # stdin is a pipe that ended
                for event in parser.feed(data):
                    self.process_message(event)
                # Taken once fed: the parser's own deadline, set while feeding, is before it.
                timed_out_by = time.monotonic() + constants.ESCAPE_DELAY + AFTER_ESCAPE_DELAY_S
            for event in parser.tick():
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                left = timed_out_by - time.monotonic()
                process(selector.select(left if left > 0 else None))
            # (Textual's loop waits 0.1 s more here for nothing it uses: exit and ctrl+z are quicker.)
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):
                pass


def terminal_driver(chosen: Type[Driver]) -> Type[Driver]:
    """The driver for an app Textual would run with ``chosen``: the quiet one in its place when
    Textual chose its LinuxDriver (a terminal on Linux or macOS), else ``chosen`` itself (the
    browser's driver textual-serve asks for through TEXTUAL_DRIVER, Windows, a test's)."""
    if chosen is LinuxDriver and sys.platform != "win32":
        return QuietLinuxDriver
    return chosen
