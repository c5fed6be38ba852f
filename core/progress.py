"""A plain-text progress line for headless commands (the app shows its own)."""

from __future__ import annotations

import sys
from typing import Callable, Optional

# progress(message, fraction): fraction in [0, 1], or None when the amount of work is unknown.
Progress = Callable[[str, Optional[float]], None]


def quiet(message: str, fraction: Optional[float] = None) -> None:
    """The progress of work nobody watches."""


def print_progress(message: str, fraction: Optional[float] = None) -> None:
    """Redraw one status line on a terminal; print plain lines otherwise (logs, pipes)."""
    stream = sys.stderr
    if fraction is None:
        text = message
    else:
        width = 24
        filled = int(round(width * max(0.0, min(1.0, fraction))))
        text = f"{message} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%"
    if stream.isatty():
        end = "\n" if fraction is not None and fraction >= 1.0 else ""
        stream.write("\r\x1b[2K" + text + end)
    else:
        stream.write(text + "\n")
    stream.flush()
