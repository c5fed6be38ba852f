"""Containers whose children cover them draw as one blank line of their background.

A frame draws every widget whose container touches the part of the screen that changed, and
draws each of them whole: a one-line change (the status line's elapsed time, once a second) drew
the screen, the pane tabs, the pane and its containers, every line of each through the styles of
all their ancestors, about 0.1 ms per widget, to keep one line of it. Nothing of a container its
children cover shows beyond its background, so ``covered_lines`` draws that line once and hands
it out again while the widget's style, the width and the app's line filters stay the same.

Textual's ``BLANK`` also skips the drawing, but without the app's line filters (``NO_COLOR``'s
monochrome), which a margin or the space beside a short child would show. A container with a
border or a scrollbar must not use this: neither is drawn.
"""

from __future__ import annotations

from textual.color import Color
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget


def covered_lines(widget: Widget, crop: Region) -> list[Strip]:
    """``render_lines`` of a container its children cover (assign it: ``render_lines = covered_lines``)."""
    style = widget.visual_style  # Textual's own cache: a new object when a style changes
    filters = tuple(widget.get_line_filters())  # a theme change replaces its filter
    cached = getattr(widget, "_covered_line", None)
    if (cached is None or cached[0] is not style or cached[1] != crop.width
            or len(cached[2]) != len(filters) or any(a is not b for a, b in zip(cached[2], filters))):
        background = style.background or Color(0, 0, 0, 0)
        line = Strip.blank(crop.width, style.rich_style)
        for line_filter in filters:
            line = line.apply_filter(line_filter, background)
        # The style and filters are kept with the line: compared by identity, they cannot be
        # mistaken for a later object at the same address.
        cached = widget._covered_line = (style, crop.width, filters, line)  # type: ignore[attr-defined]
    return [cached[3]] * crop.height
