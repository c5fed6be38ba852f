"""A project's config: its ``tunedeck.toml``, or what a new project starts from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from ..errors import BadInput
from .model import TrainConfig

PROJECT_CONFIG = "tunedeck.toml"


def load_project_config(project: Optional[Path]) -> tuple[TrainConfig, Optional[str]]:
    """The project's tunedeck.toml and its text; without one, a new project's config: a model
    that is on this machine, and the project's data directory. Raises BadInput."""
    path = project / PROJECT_CONFIG if project is not None else None
    if path is not None and path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: cannot read it: {exc}") from None
        return TrainConfig.from_toml_text(text, str(path)), text
    from ..models import default_model

    config = TrainConfig(model=default_model())
    if project is not None and (project / "data").is_dir():
        config = dataclasses.replace(config, data="data")
    return config, None


def default_config(project: Optional[Path]) -> TrainConfig:
    """The project's tunedeck.toml, else a new project's config (see ``load_project_config``)."""
    return load_project_config(project)[0]
