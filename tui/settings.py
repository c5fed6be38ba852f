"""The app's own settings (the theme, for now), kept in ``settings_file()`` as TOML."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import tomli_w

from tunedeck.core.home import settings_file
from tunedeck.core.rundir import write_atomic


def load_settings() -> dict:
    try:
        return tomllib.loads(settings_file().read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged file must not keep the app from opening


def save_setting(key: str, value) -> None:
    """Change one setting, keeping the others; written atomically."""
    settings = load_settings()
    settings[key] = value
    path = settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, tomli_w.dumps(settings))
