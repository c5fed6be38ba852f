"""tunedeck's themes: TOML files of a Textual ``Theme``'s colours, tunedeck's own and the user's.

tunedeck's themes are the ``*.toml`` files beside this module; the user's are the ``*.toml`` files
in ``themes/`` in the tunedeck home, read by the same loader, so a user's file can start as a copy
of one of ours. Each colour of ours stays distinct once a terminal with 256 colours (Terminal.app)
rounds it to the xterm palette, so they are legible with ``TEXTUAL_COLOR_SYSTEM=256``. Plot series
take their colours from the ``plot-*`` variables, so a theme recolours the plots too; a user's theme
that names none gets them from its own colours.
"""

from __future__ import annotations

from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from tunedeck.core.config.tunedeck_toml import _parse_toml, _toml_key_line
from tunedeck.core.errors import BadInput
from tunedeck.core.home import tunedeck_home

COLOURS = ("primary", "secondary", "accent", "background", "surface", "panel", "foreground",
           "success", "warning", "error")
# The variables tunedeck's own widgets use; a theme without them would stop the app's CSS.
PLOT_VARIABLES = {"plot-train": "primary", "plot-val": "accent", "plot-lr": "secondary",
                  "plot-best": "success", "plot-overlay": None, "plot-axis": None}
GREY_ON_DARK, GREY_ON_LIGHT = "#808080", "#626262"


def user_themes_folder() -> Path:
    return tunedeck_home() / "themes"


def load_theme(path: Path) -> Theme:
    """The theme in ``path``; a problem raises ``BadInput`` with ``FILE:LINE: message``."""
    text = path.read_text(encoding="utf-8")
    data = _parse_toml(text, str(path))

    def bad(key: tuple, message: str) -> BadInput:
        return BadInput(f"{path}:{_toml_key_line(text, key) or 1}: {message}")

    unknown = sorted(set(data) - {"name", "dark", "variables", *COLOURS})
    if unknown:
        raise bad((unknown[0],), f"unknown key {unknown[0]!r} (a theme has name, dark, variables and "
                                 f"the colours {', '.join(COLOURS)})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad(("name",), "a theme needs a name, as in name = \"my-theme\"")
    if "primary" not in data:
        raise bad(("primary",), "a theme needs at least its primary colour, as in primary = \"#5fafff\"")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise bad(("dark",), f"dark is true or false, not {dark!r}")
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise bad(("variables",), "variables is a table of names and colours, as in [variables]")
    colours = {key: data[key] for key in COLOURS if key in data}
    for key_path, value in [*(((k,), v) for k, v in colours.items()),
                            *((("variables", k), v) for k, v in variables.items())]:
        try:
            if not isinstance(value, str):
                raise ColorParseError(f"{value!r} is not text")
            Color.parse(value)
        except ColorParseError:
            raise bad(key_path, f"{'.'.join(key_path)} = {value!r} is not a colour "
                                "(use #rrggbb, rgb(r, g, b) or a colour name)") from None
    for variable, colour in PLOT_VARIABLES.items():
        grey = GREY_ON_DARK if dark else GREY_ON_LIGHT
        variables.setdefault(variable, colours.get(colour, colours["primary"]) if colour else grey)
    return Theme(name=name.strip(), dark=dark, variables=variables, **colours)


def load_themes(folder: Path, taken: tuple[str, ...] = ()) -> tuple[list[Theme], list[str]]:
    """The themes of every ``*.toml`` in ``folder`` in name order, and a line for each file that
    could not be one, which is skipped (a theme may not take a name in ``taken``)."""
    themes: list[Theme] = []
    problems = []
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            theme = load_theme(path)
        except BadInput as e:
            problems.append(str(e))
            continue
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{path}: cannot read the theme: {e}")
            continue
        if theme.name in taken or any(t.name == theme.name for t in themes):
            text = path.read_text(encoding="utf-8")
            problems.append(f"{path}:{_toml_key_line(text, ('name',)) or 1}: a theme named {theme.name!r} "
                            "is already loaded; give this one another name")
        else:
            themes.append(theme)
    return themes, problems


def all_themes() -> tuple[list[Theme], list[str]]:
    """tunedeck's themes then the user's, and a line for each user's file skipped."""
    user_themes, problems = load_themes(user_themes_folder(), taken=tuple(t.name for t in THEMES))
    return [*THEMES, *user_themes], problems


def _tunedecks_own() -> tuple[Theme, ...]:
    themes, problems = load_themes(Path(__file__).parent)
    if problems or not themes:
        # Our own files, installed with the package: a broken install, not the user's doing.
        raise RuntimeError("tunedeck's themes did not load: " + ("; ".join(problems) or "no themes/*.toml installed"))
    return tuple(themes)


THEMES = _tunedecks_own()
DEFAULT_THEME = "tunedeck-dark"
