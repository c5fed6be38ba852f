"""The Data pane's top line: which file is shown, what it holds, and a field for a path."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Label, Select

from tunedeck.core.data.sources import DATA_SUFFIXES
from tunedeck.core.data.validate import SPLIT_NAMES

from .messages import FileChosen
from .prompt_field import PromptField
from .rows import one_line


class FileBar(Horizontal):
    """The project's data files to choose from (and those opened or written here), a summary
    of the file shown, and, when asked, a field to type the path of another file into."""

    DEFAULT_CSS = """
    FileBar { height: 1; }
    FileBar #data-file { width: 30; }
    FileBar #data-summary { width: 1fr; height: 1; padding: 0 1; color: $text-muted; }
    FileBar #data-prompt { width: 1fr; display: none; }
    """

    def __init__(self, project: Optional[Path], data_dir: Optional[Path], **kwargs):
        super().__init__(**kwargs)
        self.project = project
        self.data_dir = data_dir
        self.extra_files: list[Path] = []  # opened or written here, beside the data dir's
        self.shown: Optional[Path] = None

    def compose(self) -> ComposeResult:
        files = self.files()
        # The first file is the one the pane opens: the Select's report of its first value
        # is no choice of the user's (taken for one, it moved the focus to a hidden pane).
        self.shown = files[0] if files else None
        yield Select(self._options(files), value=files[0] if files else Select.NULL,
                     allow_blank=not files, compact=True, prompt="no data file", id="data-file")
        yield Label("", id="data-summary")
        yield PromptField(compact=True, id="data-prompt")

    def files(self) -> list[Path]:
        """The data dir's files, train/valid/test first (mlx-lm's order), then the others."""
        found = []
        if self.data_dir is not None:
            order = {f"{name}.jsonl": i for i, name in enumerate(SPLIT_NAMES)}
            found = sorted((p for p in self.data_dir.iterdir()
                            if p.is_file() and p.suffix.lower() in DATA_SUFFIXES),
                           key=lambda p: (order.get(p.name, len(order)), p.name))
        return found + [p for p in self.extra_files if p not in found]

    def _options(self, files: list[Path]) -> list:
        def label(path: Path) -> str:
            for base in (self.data_dir, self.project):
                if base is not None and path.is_relative_to(base):
                    return one_line(str(path.relative_to(base)))
            return one_line(str(path))
        return [(label(p), p) for p in files]

    def add_files(self, paths: list[Path]) -> None:
        for path in paths:
            if path not in self.extra_files:
                self.extra_files.append(path)
        select = self.query_one("#data-file", Select)
        with select.prevent(Select.Changed):
            select.set_options(self._options(self.files()))
            if self.shown in self.files():
                select.value = self.shown

    def show_file(self, path: Path) -> None:
        """``path`` is the file shown (added to the list if it was not in it)."""
        if path not in self.files():
            self.add_files([path])
        self.shown = path
        select = self.query_one("#data-file", Select)
        if select.value != path:
            with select.prevent(Select.Changed):
                select.value = path

    def say(self, text: str) -> None:
        # One line whatever it says: no layout of the screen for a new text (the summary changes
        # with every jump to a line and every digit of one typed).
        self.query_one("#data-summary", Label).update(Content(one_line(text)), layout=False)

    @on(Select.Changed, "#data-file")
    def _file_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL and event.value != self.shown:
            self.post_message(FileChosen(event.value))

    def choose_file(self) -> None:
        select = self.query_one("#data-file", Select)
        select.focus()
        select.action_show_overlay()

    def ask_path(self) -> None:
        self.query_one(PromptField).ask("a data file to open (.jsonl .json .txt), then Enter; "
                                        "Escape to cancel")

    def resolve(self, text: str) -> Path:
        """A typed path: from the project directory when it names something there."""
        path = Path(text.strip()).expanduser()
        if not path.is_absolute() and self.project is not None and (self.project / path).exists():
            path = self.project / path
        return path.absolute()
