"""Fixtures of the end-to-end tests: real terminals (tmux) running the real app."""

from __future__ import annotations

import os

import pytest

from .terminal import Terminal


@pytest.fixture
def terminal(isolated_home):
    """Open terminals, closed after the test; ``terminal(width, height)`` opens one."""
    opened: list[Terminal] = []

    def open_terminal(width: int = 160, height: int = 48, **env) -> Terminal:
        t = Terminal(width, height, {"TUNEDECK_HOME": str(isolated_home),
                                     "PATH": os.environ.get("PATH", ""), **env})
        opened.append(t)
        return t

    yield open_terminal
    for t in opened:
        t.close()
