"""The Template and Tokens views of the Data pane: the row under the cursor as mlx-lm sees it.

Rendering goes through mlx-lm's chat template and the tokenizer, so it runs in the view's own
worker; the pane keeps the result, which the other of the two views draws without rendering
the row again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from textual import work
from textual.content import Content
from textual.worker import Worker, WorkerState

from tunedeck.core.data import formats as F
from tunedeck.core.data.sources import TXT
from tunedeck.core.data.tokens import render_row
from tunedeck.core.errors import BadInput

from .background import in_own_thread, worker_error
from .content import MUTED, issue_lines, lines, template_content, token_content
from .messages import RowRendered
from .rows import RowDetail
from .text_panel import TextPanel


@dataclass(frozen=True)
class Tokenizing:
    """What a row is rendered with: the project's model and its tokenizer (once loaded), and
    the settings mlx-lm renders by."""

    model: Optional[str]
    tokenizer: Any
    tokenizer_error: Optional[str]
    mask_prompt: bool
    max_seq_length: int
    keys: F.FeatureKeys


def why_not_tokenized(detail: RowDetail, container: str, how: Tokenizing) -> Optional[Content]:
    """Why this row has no template or tokens to show, or None when it has (once the
    tokenizer is loaded)."""
    if container == TXT:
        return Content("plain text: convert it (c) into text rows to see their tokens")
    if detail.record is None:
        return lines(Content("not a record mlx-lm can read:"), *issue_lines(detail.issues))
    if detail.format not in F.MLX_FORMATS:
        return Content(f"{F.describe(detail.format, how.keys)} records are not read by mlx-lm: "
                       "convert them (c) to see what it would train on")
    if not how.model:
        return Content("no model: set `model` in tunedeck.toml to see tokens")
    if how.tokenizer_error:
        return lines(*issue_lines([(True, how.tokenizer_error)]))
    return None


class RenderedRowView(TextPanel):
    """The row as mlx-lm renders it: its ``kind`` is "template" or "tokens"."""

    def __init__(self, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind

    def show_row(self, detail: RowDetail, path: Path, row: int, container: str,
                 how: Tokenizing, done: dict) -> bool:
        """Show ``row`` (its ``detail``) rendered, from ``done`` (the rows rendered, by key)
        or rendered now; True when it waits for the tokenizer."""
        where = f"{path.name}:{detail.line}"
        why = why_not_tokenized(detail, container, how)
        waits = why is None and how.tokenizer is None
        if waits:
            why = Content.styled(f"loading the tokenizer of {how.model}…", MUTED)
        if why is not None:
            self.show(lines(Content.styled(where, MUTED), why))
            return waits
        mask = how.mask_prompt and detail.format != F.TEXT
        key = (path, row, mask, how.max_seq_length)
        rendered = done.get(key)
        if rendered is None:
            self.show(Content.styled(f"{where}: rendering…", MUTED))
            self._render(key, detail.record, how.tokenizer, how.keys)
        elif rendered.error:
            self.show(lines(Content.styled(where, MUTED), *issue_lines([(True, rendered.error)])))
        elif self.kind == "template":
            self.show(*template_content(rendered.rendered, how.model or "", mask,
                                        how.max_seq_length, detail.format, where))
        else:
            self.show(*token_content(rendered.rendered, mask, how.max_seq_length, where))
        return False

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-render")
    def _render(self, key: tuple, record, tokenizer, keys: F.FeatureKeys) -> None:
        # key: (path, row, mask_prompt, max_seq_length)
        _, _, mask, max_seq_length = key
        try:
            rendered = in_own_thread(render_row, record, tokenizer, mask_prompt=mask,
                                     max_seq_length=max_seq_length, keys=keys)
        except BadInput as exc:
            self.post_message(RowRendered(key, error=str(exc)))
        else:
            self.post_message(RowRendered(key, rendered))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # An unexpected failure: said here, in place of the row it did not render.
        if event.state == WorkerState.ERROR:
            self.show(lines(*issue_lines([(True, worker_error(event.worker))])))
