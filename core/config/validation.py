"""Checking a config: every problem, one line each, naming the (dotted) field and what it allows.

Every problem message starts with the field it is about and says what is allowed, so a form can
show it next to the field and a command can print it as ``FILE:LINE: message``. Reading a file's
mapping (``load``) is here too: its problems are sorted by the line they are on.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

from .fields import (FIELDS, HF_DATASET_KEYS, OPTIMIZER_OPTIONS, OPTIMIZERS, SCHEDULE_ARGUMENTS,
                     SCHEDULE_NAMES, _SPECS, FieldSpec)
from .model import ConfigError, LoraParameters, LrSchedule, TrainConfig
from ..errors import BadInput
from ..text import plural

# `config` (mlx-lm does not follow a config from inside a config).
_IGNORED_KEYS = frozenset(("train", "config"))


class _Problem(NamedTuple):
    path: tuple  # where in the file: keys, and list indices for hf_dataset
    message: str


def _show(value: Any) -> str:
    """A value as the user wrote it, for `(got ...)`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _coerce(kind: str, value: Any, choices: tuple[str, ...] = ()) -> tuple[Any, Optional[str]]:
    """A value of a file or of Python code as the kind wants it, or what is wrong with it."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return value, "expected an integer"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, "expected a number"
        if not math.isfinite(value):
            return value, "expected a finite number"
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            return value, "expected true or false"
    elif kind in ("text", "path"):
        if not isinstance(value, str):
            return value, "expected a string"
    elif kind == "choice":
        if not isinstance(value, str) or value not in choices:
            return value, f"must be one of {', '.join(choices)}"
    elif kind == "size":
        size = _parse_size(value)
        if size is None:
            return value, "expected a number of bytes, such as 2000000000 or '2GB'"
        value = size
    elif kind == "list":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(item, str) and item.strip() for item in value):
            return value, "expected a list of module names"
        value = list(value)
    elif kind == "numbers":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in value):
            return value, "expected a list of numbers"
        value = list(value)
    elif kind == "pair":
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            return value, "expected two numbers, such as [0.9, 0.999]"
        value = [float(x) for x in value]
    return value, None


def _parse_size(value: Any) -> Optional[int]:
    """Bytes from an integer or from text like mlx-lm's --clear-cache-threshold ("2GB", "500M")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([MG]B?)?\s*", value, re.IGNORECASE)
    if not m:
        return None
    unit = {"": 1, "M": 10**6, "G": 10**9}[(m[2] or "")[:1].upper()]
    return round(float(m[1]) * unit)


def _check_value(spec: FieldSpec, value: Any) -> tuple[Any, list[_Problem]]:
    """One field's value, normalized (ints in float fields become floats, ...), and its problems."""
    path = tuple(spec.name.split("."))
    if value is None:
        if spec.optional:
            return None, []
        return None, [_Problem(path, f"{spec.name}: must be set")]
    if spec.kind == "table":
        return _check_optimizer_config(value)
    if spec.kind == "tables":
        return _check_hf_dataset(value)
    if spec.name == "optimizer" and isinstance(value, str):
        value = value.lower()  # mlx-lm lowercases the optimizer's name
    normalized, wrong = _coerce(spec.kind, value, spec.choices)
    if wrong is None and spec.check is not None:
        wrong = spec.check(normalized)
    if wrong:
        return value, [_Problem(path, f"{spec.name}: {wrong} (got {_show(value)})")]
    return normalized, []


def _check_optimizer_config(value: Any) -> tuple[Any, list[_Problem]]:
    path = ("optimizer_config",)
    if not isinstance(value, Mapping):
        return value, [_Problem(path, "optimizer_config: expected a table of optimizer names, "
                                      f"such as {{ adamw = {{ weight_decay = 0.01 }} }} (got {_show(value)})")]
    problems: list[_Problem] = []
    clean: dict[str, dict[str, Any]] = {}
    for opt, options in value.items():
        if opt not in OPTIMIZER_OPTIONS:
            problems.append(_unknown(path + (opt,)))
            continue
        if options is None:
            continue
        if not isinstance(options, Mapping):
            problems.append(_Problem(path + (opt,), f"optimizer_config.{opt}: expected a table of "
                                                    f"options (got {_show(options)})"))
            continue
        kinds = OPTIMIZER_OPTIONS[opt]
        table = {}
        for key, option in options.items():
            where = path + (opt, key)
            if key == "learning_rate":
                problems.append(_Problem(where, f"optimizer_config.{opt}.learning_rate: set the "
                                                "top-level learning_rate or an lr_schedule instead"))
            elif key not in kinds:
                problems.append(_unknown(where))
            elif option is not None:  # None: the optimizer's own default
                normalized, wrong = _coerce(kinds[key], option)
                if wrong:
                    problems.append(_Problem(where, f"{_dotted(where)}: {wrong} (got {_show(option)})"))
                table[key] = normalized
        if table:
            clean[opt] = table
    return clean, problems


def _check_hf_dataset(value: Any) -> tuple[Any, list[_Problem]]:
    entries = [value] if isinstance(value, Mapping) else value  # mlx-lm accepts one or a list
    if not isinstance(entries, (list, tuple)) or not all(isinstance(e, Mapping) for e in entries):
        return value, [_Problem(("hf_dataset",), "hf_dataset: expected a table or a list of "
                                                 f"tables (got {_show(value)})")]
    problems: list[_Problem] = []
    clean = []
    for i, entry in enumerate(entries):
        for key in entry:
            if key not in HF_DATASET_KEYS:
                problems.append(_unknown(("hf_dataset", i, key)))
        if not isinstance(entry.get("path"), str) or not entry["path"].strip():
            problems.append(_Problem(("hf_dataset", i, "path"),
                                     f"hf_dataset[{i}].path: required, the dataset's Hugging Face id"))
        clean.append({k: v for k, v in entry.items() if v is not None})
    return clean, problems


def _check_schedule(name: str, args: list[float]) -> tuple[Optional[list], list[_Problem]]:
    """Arguments that fit the signature of the schedule ``name``, normalized, or what is wrong
    with them."""
    params = SCHEDULE_ARGUMENTS[name]
    required = sum(1 for _, _, req in params if req)
    where = ("lr_schedule", "arguments")
    if not required <= len(args) <= len(params):
        usage = ", ".join(n for n, _, req in params if req)
        usage += "".join(f"[, {n}]" for n, _, req in params if not req)
        return None, [_Problem(where, f"lr_schedule.arguments: {name} takes {usage} "
                                      f"(got {plural(len(args), 'value')})")]
    out = []
    for (arg, kind, _), value in zip(params, args):
        if kind == "int" and (not isinstance(value, int) or value < 1):
            return None, [_Problem(where, f"lr_schedule.arguments: {arg} of {name} must be "
                                          f"a positive integer (got {_show(value)})")]
        if arg == "init" and value < 0:
            return None, [_Problem(where, "lr_schedule.arguments: init, the starting learning "
                                          f"rate, must be >= 0 (got {_show(value)})")]
        out.append(float(value) if kind == "float" else value)
    return out, []


def _check_config(cfg: TrainConfig) -> tuple[TrainConfig, list[_Problem]]:
    """The config with normalized values, and every problem in ``FIELDS`` order."""
    problems: list[_Problem] = []
    good: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.name.startswith("lr_schedule.") and cfg.lr_schedule is None:
            continue
        value = cfg.get_field(spec.name)
        if spec.name in ("lr_schedule.name", "lr_schedule.arguments") and value is None:
            what = ("one of " + ", ".join(SCHEDULE_NAMES) if spec.name.endswith("name")
                    else "a list of numbers, the starting learning rate first")
            problems.append(_Problem(tuple(spec.name.split(".")), f"{spec.name}: required, {what}"))
            continue
        normalized, found = _check_value(spec, value)
        if found:
            problems += found
        else:
            good[spec.name] = normalized

    if cfg.iters is not None and cfg.epochs is not None:
        problems.append(_Problem(("epochs",), "epochs: set either iters or epochs, not both "
                                              f"(iters = {_show(cfg.iters)})"))
    elif cfg.iters is None and cfg.epochs is None:
        problems.append(_Problem(("iters",), "iters: set iters or epochs"))
    if cfg.ranks is not None or cfg.hosts is not None:
        from ..distributed import check_batch  # the world size a hostfile gives needs reading it

        batch_problem = check_batch(cfg)
        if batch_problem is not None:
            field_name = "batch_size" if batch_problem.startswith("batch_size") else "hosts"
            problems.append(_Problem((field_name,), batch_problem))
    if "lr_schedule.name" in good and "lr_schedule.arguments" in good:
        arguments, found = _check_schedule(
            good["lr_schedule.name"], good["lr_schedule.arguments"])
        problems += found
        if arguments is not None:
            good["lr_schedule.arguments"] = arguments

    top = {k: v for k, v in good.items() if "." not in k}
    lora = {k.split(".")[1]: v for k, v in good.items() if k.startswith("lora_parameters.")}
    changes: dict[str, Any] = dict(top, lora_parameters=dataclasses.replace(cfg.lora_parameters, **lora))
    if cfg.lr_schedule is not None:
        sched = {k.split(".")[1]: v for k, v in good.items() if k.startswith("lr_schedule.")}
        changes["lr_schedule"] = dataclasses.replace(cfg.lr_schedule, **sched)
    return dataclasses.replace(cfg, **changes), problems


# ----------------------------------------------------------------------------- unknown keys

_LORA_KEYS = tuple(f.name for f in dataclasses.fields(LoraParameters))
_SCHEDULE_KEYS = tuple(f.name for f in dataclasses.fields(LrSchedule))
_TOP_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))
# A table member written at the top level ("rank = 16") is pointed to its table.
_MEMBER_OF = {name.split(".")[1]: name for name in _SPECS if "." in name}
_ALIASES = {"lr": "learning_rate", "epoch": "epochs", "alpha": "lora_parameters.scale"}


def _unknown(path: tuple) -> _Problem:
    *parent, key = path
    key = str(key)
    suggestion = None
    hint = None
    if not parent:
        suggestion = _MEMBER_OF.get(key) or _ALIASES.get(key)
        names: tuple = _TOP_KEYS
    elif parent == ["lora_parameters"]:
        names = _LORA_KEYS
        if key == "alpha":
            hint = "mlx-lm's LoRA has no alpha; set scale, which works like alpha / rank"
    elif parent == ["lr_schedule"]:
        names = _SCHEDULE_KEYS
    elif parent == ["optimizer_config"]:
        names = OPTIMIZERS
    elif parent[0] == "optimizer_config":
        names = tuple(OPTIMIZER_OPTIONS[parent[1]])
    else:
        names = HF_DATASET_KEYS
    if suggestion is None and hint is None:
        import difflib

        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        if close:
            suggestion = _dotted((*parent, close[0]))
    message = f"unknown key '{_dotted(path)}'"
    if hint:
        message += f" ({hint})"
    elif suggestion:
        message += f" (did you mean '{suggestion}'?)"
    return _Problem(path, message)


# ----------------------------------------------------------------------------- loading


def _prefix(source: Optional[str], line: Optional[int]) -> str:
    if not source:
        return ""
    return f"{source}:{line}: " if line else f"{source}: "


def _load(data: Any, source: Optional[str],
          locate: Optional[Callable[[tuple], Optional[int]]]) -> TrainConfig:
    if not isinstance(data, Mapping):
        raise ConfigError([f"{_prefix(source, None)}expected a table of mlx_lm.lora options"])
    problems: list[_Problem] = []
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _IGNORED_KEYS or value is None:
            continue  # null means the default, as in mlx-lm's merge of its YAML
        if key == "lora_parameters":
            kwargs[key] = _load_table(LoraParameters, key, value, problems)
        elif key == "lr_schedule":
            kwargs[key] = _load_table(LrSchedule, key, value, problems)
        elif key in _TOP_KEYS:
            kwargs[key] = value
        else:
            problems.append(_unknown((str(key),)))
    if "epochs" in kwargs and "iters" not in kwargs:
        kwargs["iters"] = None  # the file chose epochs; iters' default does not compete with it
    cfg, found = _check_config(TrainConfig(**kwargs))
    problems += found
    if problems:
        located = []
        for problem in problems:
            line = locate(problem.path) if locate else None
            located.append((line or math.inf, _prefix(source, line) + problem.message))
        located.sort(key=lambda item: item[0])  # stable: file order, then FIELDS order
        raise ConfigError([message for _, message in located])
    return cfg


def _load_table(cls, key: str, value: Any, problems: list[_Problem]):
    names = tuple(f.name for f in dataclasses.fields(cls))
    if not isinstance(value, Mapping):
        problems.append(_Problem((key,), f"{key}: expected a table with {', '.join(names)} "
                                         f"(got {_show(value)})"))
        return cls()
    kwargs = {}
    for sub, member in value.items():
        if sub not in names:
            problems.append(_unknown((key, sub)))
        elif member is not None:
            kwargs[sub] = member
    return cls(**kwargs)


def _read_text(path: os.PathLike | str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise BadInput(f"{path}: {e.strerror}") from None

