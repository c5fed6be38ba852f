"""The training configuration: every ``mlx_lm.lora`` option plus tunedeck's own, validated.

A ``TrainConfig`` travels between four forms, all lossless for mlx-lm's options:

* tunedeck's TOML (``run.toml``): flat keys named like mlx-lm's options, the tables
  ``[lora_parameters]``, ``[lr_schedule]``, ``[optimizer_config.<name>]`` and ``[[hf_dataset]]``.
  Only values that differ from the defaults are written (plus model, data and iters or epochs).
* mlx-lm's YAML (``mlx_lm.lora -c FILE``), read the way mlx-lm reads it and written complete.
* the equivalent ``mlx_lm.lora`` command line.
* the argument namespace ``mlx_lm.lora.main()`` builds, for a runner that calls mlx-lm in-process.

One module each: ``model`` (the dataclasses), ``fields`` (the field table a form is built from),
``validation`` (problems, one line each, ``FILE:LINE: message`` when read from a file),
``tunedeck_toml``, ``mlx_yaml`` (its YAML and command line), ``form_text`` (a field typed in a
form) and ``project`` (a project's ``tunedeck.toml``). The names below are the package's
interface; the rest is internal to it.

This package must import fast (it is on the path of ``tunedeck --help``): yaml, tomllib, tomli_w,
tomlkit, difflib and shlex are imported where they are used, mlx and mlx-lm never.
"""

from .fields import (BACKENDS, FIELDS, FINE_TUNE_TYPES, GROUPS, HF_DATASET_KEYS, OPTIMIZER_OPTIONS,
                     OPTIMIZERS, REPORT_TO, SCHEDULE_ARGUMENTS, SCHEDULE_NAMES, FieldSpec, field_spec)
from .form_text import format_field, validate_field
from .model import ConfigError, FileChanged, LoraParameters, LrSchedule, MlxCommand, TrainConfig
from .project import PROJECT_CONFIG, default_config, load_project_config

__all__ = [
    "BACKENDS", "FIELDS", "FINE_TUNE_TYPES", "GROUPS", "HF_DATASET_KEYS", "OPTIMIZER_OPTIONS",
    "OPTIMIZERS", "REPORT_TO", "SCHEDULE_ARGUMENTS", "SCHEDULE_NAMES", "FieldSpec", "field_spec",
    "format_field", "validate_field",
    "ConfigError", "FileChanged", "LoraParameters", "LrSchedule", "MlxCommand", "TrainConfig",
    "PROJECT_CONFIG", "default_config", "load_project_config",
]
