"""The Stats view of the Data pane: the open file's tokens, counted by the view."""

from __future__ import annotations

from typing import Optional

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.worker import get_current_worker

from tunedeck.core.data import formats as F
from tunedeck.core.data.tokens import count_tokens, token_stats
from tunedeck.core.text import plural

from .background import TaskView, in_own_thread
from .content import MUTED, stats_content
from .messages import TokensCounted
from .row_view import Tokenizing
from .rows import one_line
from .task_line import TaskLine
from .text_panel import TextPanel


class TokenStatsView(TaskView, Vertical):
    """Token counts of the open file with the model's tokenizer, and a length histogram."""

    DEFAULT_CSS = """
    TokenStatsView { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield TaskLine(id="data-stats-task")
        yield TextPanel(id="data-stats-text")

    @property
    def panel(self) -> TextPanel:
        return self.query_one(TextPanel)

    def count(self, key: tuple, tokenizer, keys: F.FeatureKeys) -> None:
        """Count the tokens of the file of ``key`` (path, mask_prompt, max_seq_length)."""
        self.panel.show(Content(""))
        self.task_line.progress(f"tokenizing {key[0].name}", 0.0)
        self.worker = self._count(key, tokenizer, keys)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-stats")
    def _count(self, key: tuple, tokenizer, keys: F.FeatureKeys) -> None:
        worker = get_current_worker()
        path, mask_prompt, max_seq_length = key
        counts = in_own_thread(count_tokens, path, tokenizer, mask_prompt,
                               progress=self.reporter(worker), cancel=worker.cancelled_event,
                               keys=keys)
        stats = token_stats(counts, max_seq_length)
        self.post_message(TokensCounted(worker, key, counts, stats))

    def show_for(self, key: tuple, counted: Optional[TokensCounted], how: Tokenizing) -> bool:
        """The counts for ``key`` (path, mask_prompt, max_seq_length): ``counted`` when it is
        for that key, else counted now; True when the count waits for the tokenizer."""
        if counted is not None and counted.key == key:
            self.show_counts(counted, how.model or "")
        elif self.task_running:
            pass
        elif not how.model or how.tokenizer_error:
            self.task_line.finish(how.tokenizer_error or "no model: set `model` in "
                                  "tunedeck.toml to count tokens", "failed")
        elif how.tokenizer is None:
            self.task_line.progress(f"loading the tokenizer of {how.model}…", None)
            return True
        else:
            self.count(key, how.tokenizer, how.keys)
        return False

    def forget(self) -> None:
        """The file changed: a count running is stopped and its report will be ignored."""
        self.cancel_task()
        self.worker = None

    def on_tokens_counted(self, message: TokensCounted) -> None:
        if self.ends_here(message):
            return  # for a file left since, or replaced by a newer count
        if not message.counts.complete:
            message.stop()
            self.task_line.finish("counting cancelled: press s to count again")
            self.panel.show(Content(""))
            return
        # On to the pane, which keeps the counts of its file.
        self.task_line.finish(f"{plural(message.stats.rows, 'row')} counted", "succeeded")

    def show_counts(self, counted: TokensCounted, model: str) -> None:
        self.panel.show(Content.styled(f"{counted.key[0].name}: tokens with the tokenizer of "
                                       f"{one_line(model)}", MUTED),
                        stats_content(counted.stats, counted.counts))
