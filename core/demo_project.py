"""The demo project: a tunedeck.toml for the demo model and the sample chat dataset.

The files ship inside the package (``tunedeck.core/sample_data``), so ``tunedeck demo`` needs no
network. A project the user already has is never touched: they may have edited the config or the
data since the first run.
"""

from __future__ import annotations

import os
import secrets
import shutil
from importlib import resources
from pathlib import Path

from .errors import BadInput, WorkFailed

CONFIG_NAME = "tunedeck.toml"
DATA_DIR = "data"
SPLITS = ("train.jsonl", "valid.jsonl", "test.jsonl")


def create_demo_project(path: Path) -> Path:
    """Create the demo project at ``path`` (or reuse it) and return its absolute path."""
    project = Path(path).expanduser().resolve()
    if (project / CONFIG_NAME).is_file():
        return project
    if project.exists():
        if not project.is_dir():
            raise BadInput(f"{path}: exists and is not a directory")
        if any(project.iterdir()):
            raise BadInput(f"{path}: directory is not empty and has no {CONFIG_NAME}; "
                           "choose another place for the demo project")
    samples = resources.files("tunedeck.core") / "sample_data"
    try:
        project.parent.mkdir(parents=True, exist_ok=True)
        # Assembled next to its final place and renamed in, so an interrupted call leaves either
        # a complete project or none (rename may replace an empty directory).
        # mkdir rather than mkdtemp: the project gets the user's usual permissions, not 0700.
        staging = project.parent / f".{project.name}.creating-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            (staging / DATA_DIR).mkdir()
            for split in SPLITS:
                (staging / DATA_DIR / split).write_bytes((samples / split).read_bytes())
            (staging / CONFIG_NAME).write_bytes((samples / CONFIG_NAME).read_bytes())
            os.rename(staging, project)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        if (project / CONFIG_NAME).is_file():
            return project  # another process created it at the same moment
        raise WorkFailed(f"{path}: cannot create the demo project: {exc}") from exc
    return project
