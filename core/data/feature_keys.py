"""Which columns mlx-lm is told to read: the project's feature keys, for ``data check`` and the
Data pane alike.

mlx-lm's ``prompt_feature``, ``completion_feature``, ``chat_feature`` and ``text_feature`` live
in the project's tunedeck.toml next to the rest of the training config, so checking the data
reads them from there: a ``question``/``answer`` file that trains must also check clean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from ..config import PROJECT_CONFIG
from ..errors import BadInput
from .formats import FEATURES


def features_of(config) -> Dict[str, str]:
    """The feature keys a TrainConfig sets: {"prompt": column, ...}, only those set."""
    found = {}
    for name in FEATURES:
        column = getattr(config, f"{name}_feature", None)
        if column:
            found[name] = column
    return found


def find_project_config(paths: Sequence) -> Optional[Path]:
    """The tunedeck.toml of the project the data is in: in the current directory, or in the
    nearest directory above the first path."""
    here = Path.cwd() / PROJECT_CONFIG
    if here.is_file():
        return here
    if not paths:
        return None
    start = Path(paths[0]).absolute()
    for folder in ([start] if start.is_dir() else []) + list(start.parents):
        candidate = folder / PROJECT_CONFIG
        if candidate.is_file():
            return candidate
    return None


def project_features(config_path: Path) -> Tuple[Dict[str, str], Optional[str]]:
    """(feature keys, problem): the keys a tunedeck.toml sets; a TOML that cannot be read gives
    no keys and the one-line reason, so the data can still be checked."""
    from ..config import TrainConfig

    try:
        return features_of(TrainConfig.from_toml(config_path)), None
    except (BadInput, OSError) as exc:
        return {}, str(exc)


def describe_features(features: Dict[str, str]) -> str:
    """``prompt_feature=question, completion_feature=answer``."""
    return ", ".join(f"{name}_feature={column}" for name, column in features.items())
