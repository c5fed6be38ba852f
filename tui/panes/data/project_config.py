"""What the project's tunedeck.toml says about its data, as the Data pane reads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tunedeck.core.config import default_config
from tunedeck.core.data import formats as F
from tunedeck.core.data.feature_keys import features_of
from tunedeck.core.data.tokens import DEFAULT_MAX_SEQ_LENGTH
from tunedeck.core.errors import BadInput


@dataclass
class DataSettings:
    data_dir: Optional[Path]          # the project's data directory, when there is one
    model: Optional[str]
    mask_prompt: bool
    feature_keys: F.FeatureKeys       # the columns mlx-lm is told to read (prompt_feature & co.)
    max_seq_length: int
    problem: Optional[str] = None     # why the config could not be read (defaults used then)

    @classmethod
    def of(cls, project: Optional[Path]) -> "DataSettings":
        problem = None
        try:
            config = default_config(project)
            if project is not None:
                config = config.resolve_paths(project)
        except BadInput as exc:
            config, problem = None, str(exc)
        data = Path(config.data) if config and config.data else None
        if data is None and project is not None:
            data = project / "data"
        # As `data check` reads them.
        try:
            keys = F.FeatureKeys.of(features_of(config) if config else None)
        except ValueError as exc:
            keys, problem = F.DEFAULT_KEYS, str(exc)
        return cls(data_dir=data if data is not None and data.is_dir() else None,
                   model=config.model if config else None,
                   mask_prompt=bool(config.mask_prompt) if config else False,
                   feature_keys=keys,
                   max_seq_length=(config.max_seq_length if config else None)
                   or DEFAULT_MAX_SEQ_LENGTH,
                   problem=problem)
