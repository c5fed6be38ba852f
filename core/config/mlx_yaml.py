"""mlx-lm's side of a config: its YAML (``mlx_lm.lora -c FILE``), its command line, and the
argument namespace ``mlx_lm.lora.main()`` builds, for a runner that calls mlx-lm in-process.

The YAML is read the way mlx-lm reads it and written complete. yaml and shlex are imported where
they are used, mlx and mlx-lm never: this package is on the path of ``tunedeck --help``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ..errors import BadInput
from .fields import FIELDS, OPTIMIZERS
from .model import ConfigError, LoraParameters, MlxCommand, TrainConfig
from .validation import _load, _prefix

# Keys mlx-lm only reads from a YAML file, and only when present (None would be passed on as is).
_MLX_EXTRAS = ("prompt_feature", "completion_feature", "chat_feature", "text_feature", "hf_dataset")

_YAML_HEADER = "# mlx_lm.lora configuration written by tunedeck. Run: mlx_lm.lora -c THIS_FILE\n"

# PyYAML follows YAML 1.1, where 1e-5 (no dot) and 1.0e5 (unsigned exponent) are strings.
# mlx-lm widens its loader's float rule so they are numbers; tunedeck reads the same way, and its
# dumper quotes strings that this rule would otherwise turn into numbers.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


def read_mlx_yaml(text: str, source: Optional[str]) -> TrainConfig:
    import yaml

    try:
        data = yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = _prefix(source, mark.line + 1 if mark else None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"{where}invalid YAML: {problem}") from None
    if data is None:  # an empty file: all defaults
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"{_prefix(source, None)}expected a mapping of mlx_lm.lora options"])
    return _load(data, source, _yaml_locator(text))


def to_mlx_args(cfg: TrainConfig) -> dict[str, Any]:
    """mlx-lm's argument dict for ``cfg`` (normalized); see ``TrainConfig.to_mlx_args``."""
    args: dict[str, Any] = {"model": cfg.model, "train": True, "config": None}
    for spec in FIELDS:
        if not spec.mlx or "." in spec.name or spec.name in args:
            continue
        value = getattr(cfg, spec.name)
        if spec.name in _MLX_EXTRAS and value is None:
            continue
        args[spec.name] = value
    args["iters"] = cfg.total_iters()
    args["optimizer_config"] = {
        name: dict(cfg.optimizer_config.get(name, {})) for name in OPTIMIZERS
    }
    lora = cfg.lora_parameters
    args["lora_parameters"] = {"rank": lora.rank, "dropout": lora.dropout, "scale": lora.scale}
    if lora.keys is not None:
        args["lora_parameters"]["keys"] = list(lora.keys)
    args["lr_schedule"] = cfg.lr_schedule.to_dict(keep_defaults=True) if cfg.lr_schedule else None
    if cfg.hf_dataset is not None:
        args["hf_dataset"] = [dict(entry) for entry in cfg.hf_dataset]
    return args


def to_mlx_yaml(cfg: TrainConfig) -> str:
    import yaml

    args = {k: v for k, v in to_mlx_args(cfg).items() if v is not None}
    return _YAML_HEADER + yaml.dump(
        args, Dumper=_yaml_dumper(), sort_keys=False, default_flow_style=None,
        allow_unicode=True,
    )


def to_command(cfg: TrainConfig, config_file: os.PathLike | str,
               total_iters: Optional[int]) -> MlxCommand:
    """The ``mlx_lm.lora`` command line for ``cfg`` (normalized); see ``TrainConfig.to_command``."""
    iters = total_iters if total_iters is not None else cfg.total_iters()
    needs_yaml = (
        cfg.lora_parameters != LoraParameters() or cfg.lr_schedule is not None
        or bool(cfg.optimizer_config)
        or any(getattr(cfg, key) is not None for key in _MLX_EXTRAS)
    )
    argv = ["mlx_lm.lora"]
    if needs_yaml:
        argv += ["-c", str(config_file)]
    argv.append("--train")
    defaults = TrainConfig()
    for spec in FIELDS:
        if spec.flag is None:
            continue
        value = iters if spec.name == "iters" else getattr(cfg, spec.name)
        always = spec.name in ("model", "data", "iters")
        if value is None or (not always and value == getattr(defaults, spec.name)):
            continue
        if spec.kind == "bool":
            argv.append(spec.flag)  # a store_true flag: only True differs from the default
        else:
            argv += [spec.flag, repr(value) if isinstance(value, float) else str(value)]
    import shlex

    return MlxCommand(argv, shlex.join(argv), str(config_file) if needs_yaml else None)


@functools.lru_cache(maxsize=None)
def _yaml_classes():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    class Dumper(yaml.SafeDumper):
        pass

    for cls in (Loader, Dumper):
        cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))
    return Loader, Dumper


def _yaml_loader():
    return _yaml_classes()[0]


def _yaml_dumper():
    return _yaml_classes()[1]


def _yaml_locator(text: str) -> Callable[[tuple], Optional[int]]:
    """Finds a key's line from the YAML's node tree, composed once, on the first problem."""

    @functools.lru_cache(maxsize=1)
    def root():
        import yaml

        try:
            return yaml.compose(text, Loader=_yaml_loader())
        except yaml.YAMLError:
            return None

    def locate(path: tuple) -> Optional[int]:
        import yaml

        node, line = root(), None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                if isinstance(part, int):
                    continue  # one hf_dataset table where a list was allowed
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        node, line = value, key.start_mark.line + 1
                        break
                else:
                    break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    return locate

