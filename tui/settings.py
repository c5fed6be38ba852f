"""The app's own settings, kept in ``settings_file()`` as TOML: the theme the user chose last, and
the user's ``[keymap]`` (binding id = key), which the user writes by hand."""

from __future__ import annotations

from tunedeck.core.config.tunedeck_toml import _parse_toml
from tunedeck.core.errors import BadInput
from tunedeck.core.home import settings_file
from tunedeck.core.rundir import write_atomic


def read_settings() -> dict:
    """The settings; a damaged file raises ``BadInput`` (``FILE:LINE: message``)."""
    path = settings_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read the settings: {e}") from None
    return _parse_toml(text, str(path))


def load_settings() -> dict:
    try:
        return read_settings()
    except BadInput:
        return {}  # a damaged file must not keep the app from opening; read_settings says why


def save_setting(key: str, value) -> None:
    """Change one setting, keeping the others and the user's comments; written atomically.

    A damaged file is left as it is: writing it anew would lose what the user wrote by hand.
    """
    import tomlkit  # the one writer of the file; the app's start-up only reads it

    path = settings_file()
    try:
        read_settings()
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    except (BadInput, OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError):
        return
    document[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, tomlkit.dumps(document))
