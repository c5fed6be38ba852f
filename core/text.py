"""Words and figures as tunedeck shows them, in one place: text from datasets, models and logs
made safe to show (literal, never interpreted), counts with their plural, and losses.

Widgets get the literal text as ``rich.text.Text`` / plain ``Log`` lines, never as markup, so
``[bold red]x[/]`` shows as typed. Control characters would reach the terminal and be obeyed
(an escape sequence can move the cursor or forge a hyperlink), so they are shown in caret
notation instead (ESC as ``^[``), the way ``cat -v`` shows them.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")

# What mlx-lm (through Rich) prints to draw on a terminal: colours, erase-line, cursor-up,
# cursor show/hide. In the log these are dropped (colours are "stripped", as the log is plain
# text); any other escape sequence stays visible.
_DRAWING = re.compile(r"\x1b\[[0-9;]*[mKA]|\x1b\[\?25[lh]")


def _caret(match: re.Match) -> str:
    code = ord(match.group())
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"\\x{code:02x}"


def visible(text: str) -> str:
    """``text`` with every control character (tab aside) shown, not obeyed."""
    return _CONTROL.sub(_caret, text)


def literal(text: str) -> str:
    """Text of several lines (an answer, a dataset row), safe to show: line breaks stay line
    breaks, every other control character is shown, not obeyed."""
    return "\n".join(visible(line) for line in text.split("\n"))


def log_line(raw: str) -> str:
    """One line of mlx-lm output as a terminal would have left it, colours stripped.

    A progress bar redraws itself with carriage returns: only the text after the last one
    stays on screen.
    """
    raw = raw.rstrip("\r\n")
    if "\r" in raw:
        parts = [part for part in raw.split("\r") if part]
        raw = parts[-1] if parts else ""
    return visible(_DRAWING.sub("", raw))


def plural(n: int, word: str) -> str:
    """``1 row``, ``2,048 rows``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def size_text(n: float) -> str:
    """A byte count as disk and memory figures are shown: ``512 B``, ``1.5 MB``, ``34.4 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def loss_text(loss, missing: str = "-") -> str:
    """A loss as every screen and command shows it (``missing`` when there is none)."""
    return missing if loss is None else f"{loss:.3f}"
