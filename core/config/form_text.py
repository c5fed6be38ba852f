"""A field as text in a form: parsing what the user typed, and showing a value to edit.

Names, numbers and booleans are typed as such; tables are typed as TOML inline tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Optional

from .fields import FieldSpec, field_spec
from .tunedeck_toml import _toml_module
from .validation import _check_value, _show

def validate_field(name: str, raw_text: str) -> tuple[Any, Optional[str]]:
    """Parse and check what a user typed into one field: ``(value, None)`` or ``(None, message)``.

    Checks that involve other fields (iters with epochs, a schedule's arguments against its name)
    come from ``TrainConfig.problems()``. An empty optional field is None.
    """
    spec = field_spec(name)
    text = raw_text.strip()
    if not text and spec.optional:
        return None, None
    value, error = _parse_text(spec, text)
    if error:
        return None, error
    value, problems = _check_value(spec, value)
    if problems:
        return None, problems[0].message
    return value, None


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _parse_text(spec: FieldSpec, text: str) -> tuple[Any, Optional[str]]:
    kind = spec.kind
    try:
        if kind == "int":
            return int(text), None
        if kind == "float":
            return float(text), None
    except ValueError:
        expected = "an integer" if kind == "int" else "a number"
        return None, f"{spec.name}: expected {expected} (got {_show(text)})"
    if kind == "bool":
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE, None
        return None, f"{spec.name}: expected true or false (got {_show(text)})"
    if kind == "list":
        return [item for item in re.split(r"[,\s]+", text) if item], None
    if kind == "numbers":
        numbers = []
        for item in (i for i in re.split(r"[,\s]+", text) if i):
            try:
                numbers.append(int(item) if re.fullmatch(r"[-+]?\d+", item) else float(item))
            except ValueError:
                return None, f"{spec.name}: expected numbers separated by commas (got {_show(item)})"
        return numbers, None
    if kind in ("table", "tables"):
        if not text:
            return ({} if kind == "table" else None), None
        tomllib = _toml_module()
        try:
            return tomllib.loads(f"value = {text}")["value"], None
        except tomllib.TOMLDecodeError:
            example = ("{ adamw = { weight_decay = 0.01 } }" if kind == "table"
                       else '[{ path = "user/dataset" }]')
            return None, f"{spec.name}: expected TOML such as {example} (got {_show(text)})"
    return text, None  # text, path, choice, size: checked as values


def format_field(name: str, value: Any) -> str:
    """A field's value as text for the form; ``validate_field`` parses it back."""
    spec = field_spec(name)
    if value is None or (spec.kind == "table" and not value):
        return ""
    if spec.kind in ("list", "numbers"):
        return ", ".join(_inline_toml(v) if spec.kind == "numbers" else v for v in value)
    if spec.kind in ("table", "tables", "bool", "float"):
        return _inline_toml(value)
    return str(value)


def _inline_toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        import json

        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, Mapping):
        items = ", ".join(
            f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', k) else _inline_toml(k)} = {_inline_toml(v)}"
            for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
