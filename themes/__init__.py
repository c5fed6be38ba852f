"""tunedeck's themes: Textual ``Theme`` objects, data only.

Every colour is chosen to stay distinct once a terminal with 256 colours (Terminal.app) rounds it
to the xterm palette, so both themes are legible with ``TEXTUAL_COLOR_SYSTEM=256``. Plot series take
their colours from the ``plot-*`` variables, so a theme recolours the plots too.
"""

from __future__ import annotations

from textual.theme import Theme

TUNEDECK_DARK = Theme(
    name="tunedeck-dark",
    dark=True,
    primary="#5fafff",
    secondary="#af87ff",
    accent="#ffaf00",
    foreground="#e4e4e4",
    background="#121212",
    surface="#1c1c1c",
    panel="#303030",
    success="#5fd75f",
    warning="#ffd700",
    error="#ff5f5f",
    variables={
        "plot-train": "#5fafff",
        "plot-val": "#ffaf00",
        "plot-lr": "#af87ff",
        "plot-overlay": "#808080",
        "plot-best": "#5fd75f",
        "plot-axis": "#8a8a8a",
        "footer-key-foreground": "#ffaf00",
        "input-selection-background": "#005f87",
    },
)

TUNEDECK_LIGHT = Theme(
    name="tunedeck-light",
    dark=False,
    primary="#005fd7",
    secondary="#8700af",
    accent="#af5f00",
    foreground="#1c1c1c",
    background="#ffffff",
    surface="#eeeeee",
    panel="#d0d0d0",
    success="#008700",
    warning="#875f00",
    error="#d70000",
    variables={
        "plot-train": "#005fd7",
        "plot-val": "#d75f00",
        "plot-lr": "#8700af",
        "plot-overlay": "#8a8a8a",
        "plot-best": "#008700",
        "plot-axis": "#626262",
        "footer-key-foreground": "#af5f00",
        "input-selection-background": "#afd7ff",
    },
)

THEMES = (TUNEDECK_DARK, TUNEDECK_LIGHT)
DEFAULT_THEME = TUNEDECK_DARK.name
