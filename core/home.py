"""Where tunedeck keeps its own files: the demo model, the downloaded wheel, app settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def tunedeck_home() -> Path:
    """``$TUNEDECK_HOME``, else the platform's per-user data directory."""
    explicit = os.environ.get("TUNEDECK_HOME")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "tunedeck"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "tunedeck"


def settings_file() -> Path:
    """App settings the user changes from the UI (theme and the like)."""
    return tunedeck_home() / "settings.toml"
