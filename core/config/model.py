"""The training configuration: every ``mlx_lm.lora`` option plus tunedeck's own.

The modules that check, read and write a config (validation, tunedeck_toml, mlx_yaml) build on
these classes, so the methods below reach them when called: one import cycle fewer, and none of
their libraries is loaded by ``import tunedeck.core.config``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

from ..errors import BadInput
from .fields import field_spec


@dataclass
class LoraParameters:
    """mlx-lm's ``lora_parameters``; ``keys`` None adapts every linear layer of the chosen blocks."""

    rank: int = 8
    scale: float = 20.0
    dropout: float = 0.0
    keys: Optional[list[str]] = None


@dataclass
class LrSchedule:
    """mlx-lm's ``lr_schedule``: a schedule of mlx.optimizers.schedulers with optional warm-up.

    ``arguments`` are the schedule's positional arguments, the initial learning rate first.
    """

    name: Optional[str] = None
    arguments: Optional[list[float]] = None
    warmup: int = 0
    warmup_init: float = 0.0

    def to_dict(self, keep_defaults: bool) -> dict[str, Any]:
        """The schedule as mlx-lm's ``lr_schedule`` table (of a checked config: name and
        arguments set); ``keep_defaults`` False leaves out a warm-up that is not there."""
        out: dict[str, Any] = {"name": self.name, "arguments": list(self.arguments or ())}
        if keep_defaults or self.warmup:
            out["warmup"] = self.warmup
        if keep_defaults or self.warmup_init:
            out["warmup_init"] = self.warmup_init
        return out


@dataclass
class TrainConfig:
    """Every ``mlx_lm.lora`` option with mlx-lm's defaults, plus tunedeck's own options.

    tunedeck's own: ``name``, ``epochs`` (instead of ``iters``), ``early_stopping_patience`` and
    ``early_stopping_min_delta``. Set ``iters=None`` when setting ``epochs``.
    """

    # Model and data
    model: str = "Qwen/Qwen3-0.6b"
    data: str = "mlx-community/WikiSQL"
    name: Optional[str] = None
    prompt_feature: Optional[str] = None
    completion_feature: Optional[str] = None
    chat_feature: Optional[str] = None
    text_feature: Optional[str] = None
    hf_dataset: Optional[list[dict]] = None
    max_seq_length: int = 2048
    # Method and LoRA
    fine_tune_type: str = "lora"
    num_layers: int = 16
    lora_parameters: LoraParameters = field(default_factory=LoraParameters)
    mask_prompt: bool = False
    # Schedule
    iters: Optional[int] = 1000
    epochs: Optional[float] = None
    batch_size: int = 4
    grad_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    optimizer: str = "adam"
    optimizer_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    lr_schedule: Optional[LrSchedule] = None
    # Evaluation and checkpoints
    steps_per_report: int = 10
    steps_per_eval: int = 200
    val_batches: int = 25
    early_stopping_patience: Optional[int] = None
    early_stopping_min_delta: float = 0.0
    save_every: int = 100
    answer_checks: bool = False
    adapter_path: str = "adapters"
    resume_adapter_file: Optional[str] = None
    test: bool = False
    test_batches: int = 500
    # Advanced
    grad_checkpoint: bool = False
    seed: int = 0
    clear_cache_threshold: int = 0
    report_to: Optional[str] = None
    project_name: Optional[str] = None
    trust_remote_code: bool = False
    # Several Macs (or ranks): mlx's own data-parallel training
    ranks: Optional[int] = None
    hosts: Optional[str] = None
    backend: str = "ring"


    # ------------------------------------------------------------------ validation

    def problems(self) -> list[str]:
        """Every problem, one line each, naming the (dotted) field and what it allows."""
        from .validation import _check_config

        return [p.message for p in _check_config(self)[1]]

    def validate(self) -> None:
        """Raise ``ConfigError`` (a ``BadInput``) listing every problem, or return."""
        self._normalized()

    def _normalized(self) -> TrainConfig:
        """This config with its values in canonical types (what a file read back gives),
        or ``ConfigError``. Every writer starts here, so nothing invalid is ever written."""
        from .validation import _check_config

        cfg, problems = _check_config(self)
        if problems:
            raise ConfigError([p.message for p in problems])
        return cfg

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: Optional[str] = None) -> TrainConfig:
        """A config from mlx-lm-style keys (what a TOML or YAML file holds, or mlx-lm's args).

        ``source`` prefixes messages (``SOURCE: message``). Raises ``ConfigError``.
        """
        from .validation import _load

        return _load(data, source, None)

    @classmethod
    def from_toml_text(cls, text: str, source: Optional[str] = None) -> TrainConfig:
        from .tunedeck_toml import read_toml

        return read_toml(text, source)

    @classmethod
    def from_toml(cls, path: os.PathLike | str) -> TrainConfig:
        """Read tunedeck's TOML. Paths in it stay as written: see ``resolve_paths``."""
        from .validation import _read_text

        return cls.from_toml_text(_read_text(path), str(path))

    @classmethod
    def from_mlx_yaml_text(cls, text: str, source: Optional[str] = None) -> TrainConfig:
        from .mlx_yaml import read_mlx_yaml

        return read_mlx_yaml(text, source)

    @classmethod
    def from_mlx_yaml(cls, path: os.PathLike | str) -> TrainConfig:
        """Read any YAML ``mlx_lm.lora -c`` reads (and tunedeck's own keys, if present)."""
        from .validation import _read_text

        return cls.from_mlx_yaml_text(_read_text(path), str(path))

    @classmethod
    def load(cls, path: os.PathLike | str) -> TrainConfig:
        """Read a ``.toml`` (tunedeck) or ``.yaml``/``.yml`` (mlx-lm) config, by its suffix."""
        suffix = Path(path).suffix.lower()
        if suffix == ".toml":
            return cls.from_toml(path)
        if suffix in (".yaml", ".yml"):
            return cls.from_mlx_yaml(path)
        raise BadInput(f"{path}: expected a .toml (tunedeck) or .yaml (mlx-lm) config file")

    # ------------------------------------------------------------------ writing

    def to_toml(self) -> str:
        """tunedeck's TOML: the non-default values only, so the file stays short."""
        from .tunedeck_toml import to_toml

        return to_toml(self._normalized())

    def edit_toml(self, text: str, source: Optional[str] = None) -> str:
        """``text`` (an existing tunedeck TOML) with this config's values, edited in place.

        Comments, key order, formatting and every value this config does not change stay as
        they are: a key is rewritten only when its value differs, removed only when this config
        unsets it, and added (at the end of its table) only as ``to_toml`` would write it.
        A text that does not parse raises BadInput: it is never replaced by defaults.
        """
        from .tunedeck_toml import edit_toml

        return edit_toml(self._normalized(), text, source)

    def write_toml(self, path: os.PathLike | str, loaded_text: Optional[str] = None,
                   overwrite: bool = False) -> str:
        """Save as tunedeck's TOML, atomically; returns the text written.

        A new file gets ``to_toml()``. An existing file is edited in place (``edit_toml``), and
        only if its text is still ``loaded_text``, what the caller read from it and shows:
        otherwise ``FileChanged`` is raised (changed on disk since, or never loaded), unless
        ``overwrite`` says the user agreed to save over it.
        """
        from .tunedeck_toml import write_toml

        return write_toml(self._normalized(), path, loaded_text, overwrite)

    def to_mlx_args(self) -> dict[str, Any]:
        """The argument dict ``mlx_lm.lora.main()`` builds for this config, defaults merged.

        ``types.SimpleNamespace(**cfg.to_mlx_args())`` is what mlx-lm's functions expect. Its keys
        are mlx-lm's ``CONFIG_DEFAULTS`` plus the feature keys and ``hf_dataset`` when they are set.
        ``iters`` is resolved from ``epochs`` when needed; tunedeck's own options are left out.
        """
        from .mlx_yaml import to_mlx_args

        return to_mlx_args(self._normalized())

    def to_mlx_yaml(self) -> str:
        """A complete YAML for ``mlx_lm.lora -c FILE`` (it sets ``train: true`` itself).

        mlx-lm ignores two YAML keys because their command-line defaults win over the file:
        ``trust_remote_code`` and ``clear_cache_threshold``. ``to_command`` passes them as flags.
        """
        from .mlx_yaml import to_mlx_yaml

        return to_mlx_yaml(self._normalized())

    def write_mlx_yaml(self, path: os.PathLike | str) -> None:
        from ..rundir import write_atomic

        write_atomic(Path(path), self.to_mlx_yaml())

    def to_command(self, config_file: os.PathLike | str = "config.yaml",
                   total_iters: Optional[int] = None) -> MlxCommand:
        """The equivalent ``mlx_lm.lora`` command line.

        Options with a flag are passed as flags (model, data and iters always, the rest when
        they differ from the default). LoRA parameters, the LR schedule, optimizer options,
        feature keys and hf_dataset have no flag: when any is set the command reads
        ``-c config_file``, which must hold ``to_mlx_yaml()``. ``total_iters``, when the caller
        knows it, spares counting train.jsonl for ``epochs`` (a form must not read a big file
        per keystroke).
        """
        from .mlx_yaml import to_command

        return to_command(self._normalized(), config_file, total_iters)

    # ------------------------------------------------------------------ epochs and paths

    def total_iters(self) -> int:
        """``iters``, or the iterations ``epochs`` amounts to over ``<data>/train.jsonl``."""
        if self.epochs is None:
            if self.iters is None:
                raise BadInput("iters: set iters or epochs")
            return self.iters
        return self.iters_for_epochs(self.count_train_rows())

    def iters_for_epochs(self, train_rows: int) -> int:
        """Iterations for ``epochs`` passes over ``train_rows`` examples.

        mlx-lm draws whole batches only (a remainder smaller than batch_size is left out of each
        pass), so one epoch is ``train_rows // batch_size`` iterations; a fractional total is
        rounded up.
        """
        from .validation import _check_value

        if self.epochs is None:
            raise BadInput("epochs: not set")
        for name in ("epochs", "batch_size"):
            problems = _check_value(field_spec(name), getattr(self, name))[1]
            if problems:
                raise BadInput(problems[0].message)
        per_epoch = train_rows // self.batch_size
        if per_epoch == 0:
            raise BadInput(
                f"epochs: the training split has {train_rows} rows, "
                f"fewer than batch_size ({self.batch_size})"
            )
        # Rounded first so that e.g. 0.1 * 30 (3.0000000000000004) is 3 iterations, not 4.
        return max(1, math.ceil(round(self.epochs * per_epoch, 6)))

    def count_train_rows(self) -> int:
        """Non-empty lines of ``<data>/train.jsonl``, counted without parsing JSON."""
        path = Path(self.data).expanduser() / "train.jsonl"
        try:
            with open(path, "rb", buffering=1 << 20) as f:
                return sum(1 for line in f if not line.isspace())
        except FileNotFoundError:
            raise BadInput(
                f"epochs: {path} not found; epochs needs a local data directory with "
                "train.jsonl (set iters instead)"
            ) from None
        except OSError as e:
            raise BadInput(f"{path}: {e.strerror}") from None

    def resolve_paths(self, base: os.PathLike | str) -> TrainConfig:
        """A copy with relative local paths made absolute against ``base``; this config is
        left as it is (it may be what a form shows and saves).

        ``adapter_path`` and ``resume_adapter_file`` are always paths. ``model``, ``data``, each
        ``hf_dataset`` path and ``hosts`` may be Hugging Face ids (or ssh names), so they are
        resolved only when they look local: absolute, starting with ``~`` or ``.``, or naming something under ``base``.
        """
        base = Path(base).expanduser().absolute()

        def resolve(value: str, always: bool) -> str:
            if not value or not isinstance(value, str):
                return value  # not a path: left as it is, for the checks to report
            path = Path(value).expanduser()
            if path.is_absolute():
                return str(path)
            if always or value.startswith((".", "~")) or (base / path).exists():
                return os.path.normpath(base / path)
            return value

        def resolve_set(value: Optional[str], always: bool) -> Optional[str]:
            return None if value is None else resolve(value, always)

        hf_dataset = self.hf_dataset
        if hf_dataset is not None and isinstance(hf_dataset, list):
            hf_dataset = [dict(entry, path=resolve(entry["path"], False))
                          if isinstance(entry, Mapping) and "path" in entry else entry
                          for entry in hf_dataset]
        return dataclasses.replace(
            self, model=resolve(self.model, False), data=resolve(self.data, False),
            hf_dataset=hf_dataset, adapter_path=resolve(self.adapter_path, True),
            resume_adapter_file=resolve_set(self.resume_adapter_file, True),
            # A hostfile next to the config (ssh names such as "mac1,mac2" name no file there).
            hosts=resolve_set(self.hosts, False))

    @property
    def run_name(self) -> str:
        """``name``, or one derived from the model's and the data's last path components."""
        if self.name:
            return self.name
        data = self.hf_dataset[0].get("path", "") if self.hf_dataset else self.data
        parts = []
        for value in (self.model, data):
            last = str(value).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
            slug = re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-.")
            if slug and slug.lower() not in ("data", "dataset", "datasets"):
                parts.append(slug)
        return "-".join(parts)[:80] or "run"

    # ------------------------------------------------------------------ one field at a time

    def get_field(self, name: str) -> Any:
        """The value of a field of ``FIELDS`` (dotted names reach into the tables)."""
        field_spec(name)
        top, _, sub = name.partition(".")
        value = getattr(self, top)
        if not sub:
            return value
        return None if value is None else getattr(value, sub)

    def with_field(self, name: str, value: Any) -> TrainConfig:
        """A copy with one field of ``FIELDS`` set. ``lr_schedule.name`` None removes the schedule."""
        spec = field_spec(name)
        top, _, sub = name.partition(".")
        if not sub:
            return dataclasses.replace(self, **{top: value})
        if top == "lora_parameters":
            return dataclasses.replace(
                self, lora_parameters=dataclasses.replace(self.lora_parameters, **{sub: value}))
        if self.lr_schedule is None and value == spec.default:
            return self  # leaving a schedule's sub-field at its default does not create a schedule
        if sub == "name" and value is None:
            return dataclasses.replace(self, lr_schedule=None)
        schedule = self.lr_schedule or LrSchedule()
        return dataclasses.replace(self, lr_schedule=dataclasses.replace(schedule, **{sub: value}))


class MlxCommand(NamedTuple):
    argv: list[str]
    text: str  # argv, shell-quoted
    config_file: Optional[str]  # the YAML the command reads (write to_mlx_yaml() there), or None


class FileChanged(BadInput):
    """Saving would overwrite a file the caller has not seen in its current state."""

    def __init__(self, path: Path, never_loaded: bool):
        self.path = path
        self.never_loaded = never_loaded
        why = "exists and was not the one loaded" if never_loaded else "changed on disk since it was loaded"
        super().__init__(f"{path}: {why}; not overwritten without asking")


class ConfigError(BadInput):
    """Bad configuration. The message is the first problem and a count of the others;
    ``problems`` holds every one (prefixed ``FILE:LINE:`` when read from a file)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(self.problems[0] + suffix)
