"""tunedeck's TOML (``run.toml``, ``tunedeck.toml``): read with tomllib, written with tomli-w,
and saved over the user's file by editing it in place with tomlkit.

Flat keys named like mlx-lm's options, the tables ``[lora_parameters]``, ``[lr_schedule]``,
``[optimizer_config.<name>]`` and ``[[hf_dataset]]``. Only values that differ from the defaults
are written (plus model, data and iters or epochs). tomllib, tomli_w and tomlkit are imported
where they are used: this package is on the path of ``tunedeck --help``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from ..errors import BadInput
from ..rundir import write_atomic
from .model import FileChanged, LoraParameters, LrSchedule, TrainConfig
from .validation import _load, _prefix

_TOML_HEADER = (
    "# tunedeck training config. Keys are mlx_lm.lora's options (see `mlx_lm.lora --help`);\n"
    "# name, epochs, early_stopping_*, answer_checks, ranks, hosts and backend are tunedeck's own.\n"
    "# Absent keys keep their defaults.\n"
)



def read_toml(text: str, source: Optional[str]) -> TrainConfig:
    return _load(_parse_toml(text, source), source, functools.partial(_toml_key_line, text))


def to_toml(cfg: TrainConfig) -> str:
    """``cfg`` (normalized) as a new file: the non-default values only, so the file stays short."""
    import tomli_w

    defaults = TrainConfig()
    doc: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "lora_parameters":
            table = {k: v for k, v in dataclasses.asdict(value).items()
                     if v is not None and v != getattr(defaults.lora_parameters, k)}
            if table:
                doc[f.name] = table
        elif f.name == "lr_schedule":
            if value is not None:
                doc[f.name] = value.to_dict(keep_defaults=False)
        elif value is None:
            continue  # TOML has no null; absent means the default
        elif f.name in ("model", "data", "iters", "epochs") or value != getattr(defaults, f.name):
            doc[f.name] = value
    return _TOML_HEADER + tomli_w.dumps(doc)


def edit_toml(cfg: TrainConfig, text: str, source: Optional[str]) -> str:
    """``text`` with ``cfg``'s (normalized) values, edited in place (see ``TrainConfig.edit_toml``)."""
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        doc = tomlkit.parse(text)
    except ParseError as e:
        raise BadInput(f"{_prefix(source, e.line)}invalid TOML, so it is not replaced: "
                       f"fix it or save under another name") from None
    try:
        old: Optional[TrainConfig] = _load(doc.unwrap(), None, None)
    except BadInput:
        old = None  # valid TOML with a bad value: every key the config sets is rewritten
    _edit_tables(doc, cfg, old)
    edited = tomlkit.dumps(doc)
    if read_toml(edited, None) != cfg:
        raise BadInput(f"{_prefix(source, None)}could not be edited in place to hold these "
                       "values; nothing was saved (save under another name)")
    return edited


def write_toml(cfg: TrainConfig, path: os.PathLike | str, loaded_text: Optional[str],
               overwrite: bool) -> str:
    """Save ``cfg`` atomically, new or edited in place (see ``TrainConfig.write_toml``)."""
    path = Path(path)
    try:
        current: Optional[str] = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read it to edit it in place: {e}") from None
    if current is None:
        text = to_toml(cfg)
    else:
        if current != loaded_text and not overwrite:
            raise FileChanged(path, never_loaded=loaded_text is None)
        text = edit_toml(cfg, current, str(path))
        if text == current:
            return text  # nothing to change: the file (and its times) stay untouched
    write_atomic(path, text)
    return text


def _toml_module() -> ModuleType:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    return tomllib


def _parse_toml(text: str, source: Optional[str]) -> dict:
    tomllib = _toml_module()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        m = re.search(r"\s*\(at line (\d+), column \d+\)", message)
        line = int(m[1]) if m else getattr(e, "lineno", None)
        if line is None and "end of document" in message:
            line = text.count("\n") + 1
        if m:
            message = message[:m.start()] + message[m.end():]
        raise BadInput(f"{_prefix(source, line)}invalid TOML: {message}") from None


_MISSING = object()


def _edit_tables(doc, cfg: TrainConfig, old: Optional[TrainConfig]) -> None:
    """Bring a tomlkit document to ``cfg``'s values, key by key (see ``edit_toml``).

    ``old`` is the config the document held (None if it did not load): a key whose value is
    already right is left alone, so its spelling (6e-4, "2GB") and comments survive."""
    defaults = TrainConfig()
    for f in dataclasses.fields(cfg):
        name, value = f.name, getattr(cfg, f.name)
        was = getattr(old, name) if old is not None else _MISSING
        if name in ("lora_parameters", "lr_schedule"):
            if value is None:  # lr_schedule unset
                doc.pop(name, None)
                continue
            table_defaults = dataclasses.asdict(defaults.lora_parameters if name == "lora_parameters"
                                                else LrSchedule())
            wanted = {k: v for k, v in dataclasses.asdict(value).items()
                      if v is not None and (name == "lr_schedule" and k in ("name", "arguments")
                                            or v != table_defaults[k])}
            if name not in doc:
                if wanted:
                    doc[name] = wanted
                continue
            was_table = dataclasses.asdict(was) if isinstance(was, (LoraParameters, LrSchedule)) else {}
            _edit_keys(doc[name], dataclasses.asdict(value), was_table if old is not None else None,
                       wanted)
            continue
        written = name in ("model", "data", "iters", "epochs") or value != getattr(defaults, name)
        _edit_key(doc, name, value, was, value is not None and written)


def _edit_keys(table, values: dict, was: Optional[dict], wanted: dict) -> None:
    for key, value in values.items():
        previous = was.get(key, _MISSING) if was is not None else _MISSING
        _edit_key(table, key, value, previous, key in wanted)


def _edit_key(table, key: str, value: Any, was: Any, add: bool) -> None:
    """One key: left alone when it already holds ``value``, else set, removed or added."""
    if key in table:
        if value is None or (isinstance(value, (dict, list)) and not value and not add):
            del table[key]
        elif was is _MISSING or was != value:
            table[key] = value
    elif add:
        table[key] = value


_TOML_KEY_PART = r'(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')'
_TOML_KEY = re.compile(rf"\s*({_TOML_KEY_PART}(?:\s*\.\s*{_TOML_KEY_PART})*)\s*=")
_TOML_TABLE = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]")
_TOML_ARRAY_TABLE = re.compile(r"\s*\[\[\s*([^\[\]]+?)\s*\]\]")


def _toml_parts(dotted: str) -> tuple:
    return tuple(a or b or c for a, b, c in re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', dotted))


def _toml_key_line(text: str, path: tuple) -> Optional[int]:
    """The line that sets ``path`` (or its nearest enclosing table), found by scanning the text:
    tomllib keeps no positions. Good enough for keys, tables and arrays of tables."""
    table: tuple = ()
    seen: dict[tuple, int] = {}
    best, best_line = 0, None
    for lineno, line in enumerate(text.splitlines(), 1):
        if m := _TOML_ARRAY_TABLE.match(line):
            name = _toml_parts(m[1])
            seen[name] = seen.get(name, -1) + 1
            table = candidate = name + (seen[name],)
        elif m := _TOML_TABLE.match(line):
            table = candidate = _toml_parts(m[1])
        elif m := _TOML_KEY.match(line):
            candidate = table + _toml_parts(m[1])
        else:
            continue
        n = len(candidate)
        if n > best and path[:n] == candidate:
            best, best_line = n, lineno
    return best_line

