"""The training configuration: every ``mlx_lm.lora`` option plus tunedeck's own, validated.

A ``TrainConfig`` travels between four forms, all lossless for mlx-lm's options:

* tunedeck's TOML (``run.toml``): flat keys named like mlx-lm's options, the tables
  ``[lora_parameters]``, ``[lr_schedule]``, ``[optimizer_config.<name>]`` and ``[[hf_dataset]]``.
  Only values that differ from the defaults are written (plus model, data and iters or epochs).
* mlx-lm's YAML (``mlx_lm.lora -c FILE``), read the way mlx-lm reads it and written complete.
* the equivalent ``mlx_lm.lora`` command line.
* the argument namespace ``mlx_lm.lora.main()`` builds, for a runner that calls mlx-lm in-process.

Every problem message starts with the field it is about and says what is allowed, so a form can
show it next to the field and a command can print it as ``FILE:LINE: message``.

This module must import fast (it is on the path of ``tunedeck --help``): yaml, tomllib, tomli_w, tomlkit,
difflib and shlex are imported where they are used, mlx and mlx-lm never. The static tables of
schedules and optimizer options below are checked against the installed mlx by the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

from .errors import BadInput

FINE_TUNE_TYPES = ("lora", "dora", "full")
OPTIMIZERS = ("adam", "adamw", "muon", "sgd", "adafactor")
REPORT_TO = ("wandb", "swanlab")

# The numeric schedules of mlx.optimizers.schedulers and their positional arguments:
# (argument, kind, required). join_schedules is left out: its arguments are functions.
SCHEDULE_ARGUMENTS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "cosine_decay": (("init", "float", True), ("decay_steps", "int", True), ("end", "float", False)),
    "exponential_decay": (("init", "float", True), ("decay_rate", "float", True)),
    "linear_schedule": (("init", "float", True), ("end", "float", True), ("steps", "int", True)),
    "step_decay": (("init", "float", True), ("decay_rate", "float", True), ("step_size", "int", True)),
}
SCHEDULE_NAMES = tuple(SCHEDULE_ARGUMENTS)

# Keyword options of each mlx optimizer that optimizer_config may set, and their kinds
# ("pair": two numbers). learning_rate is not among them: mlx-lm passes it itself.
OPTIMIZER_OPTIONS: dict[str, dict[str, str]] = {
    "adam": {"betas": "pair", "eps": "float", "bias_correction": "bool"},
    "adamw": {"betas": "pair", "eps": "float", "weight_decay": "float", "bias_correction": "bool"},
    "muon": {"momentum": "float", "weight_decay": "float", "nesterov": "bool", "ns_steps": "int"},
    "sgd": {"momentum": "float", "weight_decay": "float", "dampening": "float", "nesterov": "bool"},
    "adafactor": {
        "eps": "pair", "clip_threshold": "float", "decay_rate": "float", "beta_1": "float",
        "weight_decay": "float", "scale_parameter": "bool", "relative_step": "bool",
        "warmup_init": "bool",
    },
}

# Keys of one hf_dataset entry that mlx-lm reads (tuner/datasets.py).
HF_DATASET_KEYS = (
    "path", "train_split", "valid_split", "test_split", "config",
    "prompt_feature", "completion_feature", "chat_feature", "text_feature",
)

GROUPS = ("Model and data", "Method and LoRA", "Schedule", "Evaluation and checkpoints", "Advanced",
          "Several Macs")
BACKENDS = ("ring", "jaccl", "mpi")

# Keys mlx-lm only reads from a YAML file, and only when present (None would be passed on as is).
_MLX_EXTRAS = ("prompt_feature", "completion_feature", "chat_feature", "text_feature", "hf_dataset")

# mlx_lm.lora options that have a command-line flag (--name-with-dashes).
_FLAGGED = frozenset((
    "model", "data", "fine_tune_type", "optimizer", "mask_prompt", "num_layers", "batch_size",
    "iters", "val_batches", "learning_rate", "steps_per_report", "steps_per_eval",
    "grad_accumulation_steps", "resume_adapter_file", "adapter_path", "save_every", "test",
    "test_batches", "max_seq_length", "grad_checkpoint", "clear_cache_threshold", "report_to",
    "project_name", "seed", "trust_remote_code",
))

# Keys of an mlx-lm YAML that are not options of a run: `train` (tunedeck always trains) and
# `config` (mlx-lm does not follow a config from inside a config).
_IGNORED_KEYS = frozenset(("train", "config"))

_SEED_MAX = 2**32 - 1  # numpy's seed range, which mlx-lm seeds with args.seed


# ----------------------------------------------------------------------------- the dataclasses


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
        return [p.message for p in _check_config(self)[1]]

    def validate(self) -> None:
        """Raise ``ConfigError`` (a ``BadInput``) listing every problem, or return."""
        self._normalized()

    def _normalized(self) -> "TrainConfig":
        """This config with its values in canonical types (what a file read back gives),
        or ``ConfigError``. Every writer starts here, so nothing invalid is ever written."""
        cfg, problems = _check_config(self)
        if problems:
            raise ConfigError([p.message for p in problems])
        return cfg

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: Optional[str] = None) -> "TrainConfig":
        """A config from mlx-lm-style keys (what a TOML or YAML file holds, or mlx-lm's args).

        ``source`` prefixes messages (``SOURCE: message``). Raises ``ConfigError``.
        """
        return _load(data, source, None)

    @classmethod
    def from_toml_text(cls, text: str, source: Optional[str] = None) -> "TrainConfig":
        doc = _parse_toml(text, source)
        return _load(doc, source, functools.partial(_toml_key_line, text))

    @classmethod
    def from_toml(cls, path: os.PathLike | str) -> "TrainConfig":
        """Read tunedeck's TOML. Paths in it stay as written: see ``resolve_paths``."""
        return cls.from_toml_text(_read_text(path), str(path))

    @classmethod
    def from_mlx_yaml_text(cls, text: str, source: Optional[str] = None) -> "TrainConfig":
        yaml = _yaml()
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

    @classmethod
    def from_mlx_yaml(cls, path: os.PathLike | str) -> "TrainConfig":
        """Read any YAML ``mlx_lm.lora -c`` reads (and tunedeck's own keys, if present)."""
        return cls.from_mlx_yaml_text(_read_text(path), str(path))

    @classmethod
    def load(cls, path: os.PathLike | str) -> "TrainConfig":
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
        import tomli_w

        cfg = self._normalized()
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
                    doc[f.name] = _schedule_dict(value, keep_defaults=False)
            elif value is None:
                continue  # TOML has no null; absent means the default
            elif f.name in ("model", "data", "iters", "epochs") or value != getattr(defaults, f.name):
                doc[f.name] = value
        return _TOML_HEADER + tomli_w.dumps(doc)

    def edit_toml(self, text: str, source: Optional[str] = None) -> str:
        """``text`` (an existing tunedeck TOML) with this config's values, edited in place.

        Comments, key order, formatting and every value this config does not change stay as
        they are: a key is rewritten only when its value differs, removed only when this config
        unsets it, and added (at the end of its table) only as ``to_toml`` would write it.
        A text that does not parse raises BadInput: it is never replaced by defaults.
        """
        import tomlkit
        from tomlkit.exceptions import ParseError

        cfg = self._normalized()
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
        if TrainConfig.from_toml_text(edited) != cfg:
            raise BadInput(f"{_prefix(source, None)}could not be edited in place to hold these "
                           "values; nothing was saved (save under another name)")
        return edited

    def write_toml(self, path: os.PathLike | str, loaded_text: Optional[str] = None,
                   overwrite: bool = False) -> str:
        """Save as tunedeck's TOML, atomically; returns the text written.

        A new file gets ``to_toml()``. An existing file is edited in place (``edit_toml``), and
        only if its text is still ``loaded_text``, what the caller read from it and shows:
        otherwise ``FileChanged`` is raised (changed on disk since, or never loaded), unless
        ``overwrite`` says the user agreed to save over it.
        """
        from .rundir import write_atomic

        path = Path(path)
        try:
            current: Optional[str] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"{path}: cannot read it to edit it in place: {e}") from None
        if current is None:
            text = self.to_toml()
        else:
            if current != loaded_text and not overwrite:
                raise FileChanged(path, never_loaded=loaded_text is None)
            text = self.edit_toml(current, str(path))
            if text == current:
                return text  # nothing to change: the file (and its times) stay untouched
        write_atomic(path, text)
        return text

    def to_mlx_args(self) -> dict[str, Any]:
        """The argument dict ``mlx_lm.lora.main()`` builds for this config, defaults merged.

        ``types.SimpleNamespace(**cfg.to_mlx_args())`` is what mlx-lm's functions expect. Its keys
        are mlx-lm's ``CONFIG_DEFAULTS`` plus the feature keys and ``hf_dataset`` when they are set.
        ``iters`` is resolved from ``epochs`` when needed; tunedeck's own options are left out.
        """
        cfg = self._normalized()
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
        args["lr_schedule"] = (
            _schedule_dict(cfg.lr_schedule, keep_defaults=True) if cfg.lr_schedule else None
        )
        if cfg.hf_dataset is not None:
            args["hf_dataset"] = [dict(entry) for entry in cfg.hf_dataset]
        return args

    def to_mlx_yaml(self) -> str:
        """A complete YAML for ``mlx_lm.lora -c FILE`` (it sets ``train: true`` itself).

        mlx-lm ignores two YAML keys because their command-line defaults win over the file:
        ``trust_remote_code`` and ``clear_cache_threshold``. ``to_command`` passes them as flags.
        """
        yaml = _yaml()
        args = {k: v for k, v in self.to_mlx_args().items() if v is not None}
        return _YAML_HEADER + yaml.dump(
            args, Dumper=_yaml_dumper(), sort_keys=False, default_flow_style=None,
            allow_unicode=True,
        )

    def write_mlx_yaml(self, path: os.PathLike | str) -> None:
        from .rundir import write_atomic

        write_atomic(Path(path), self.to_mlx_yaml())

    def to_command(self, config_file: os.PathLike | str = "config.yaml",
                   total_iters: Optional[int] = None) -> "MlxCommand":
        """The equivalent ``mlx_lm.lora`` command line.

        Options with a flag are passed as flags (model, data and iters always, the rest when
        they differ from the default). LoRA parameters, the LR schedule, optimizer options,
        feature keys and hf_dataset have no flag: when any is set the command reads
        ``-c config_file``, which must hold ``to_mlx_yaml()``. ``total_iters``, when the caller
        knows it, spares counting train.jsonl for ``epochs`` (a form must not read a big file
        per keystroke).
        """
        cfg = self._normalized()
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

    # ------------------------------------------------------------------ epochs and paths

    def total_iters(self) -> int:
        """``iters``, or the iterations ``epochs`` amounts to over ``<data>/train.jsonl``."""
        if self.epochs is None:
            return self.iters
        return self.iters_for_epochs(self.count_train_rows())

    def iters_for_epochs(self, train_rows: int) -> int:
        """Iterations for ``epochs`` passes over ``train_rows`` examples.

        mlx-lm draws whole batches only (a remainder smaller than batch_size is left out of each
        pass), so one epoch is ``train_rows // batch_size`` iterations; a fractional total is
        rounded up.
        """
        if self.epochs is None:
            raise BadInput("epochs: not set")
        for name in ("epochs", "batch_size"):
            problems = _check_value(_SPECS[name], getattr(self, name))[1]
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

    def resolve_paths(self, base: os.PathLike | str) -> "TrainConfig":
        """A copy with relative local paths made absolute against ``base``; this config is
        left as it is (it may be what a form shows and saves).

        ``adapter_path`` and ``resume_adapter_file`` are always paths. ``model``, ``data``, each
        ``hf_dataset`` path and ``hosts`` may be Hugging Face ids (or ssh names), so they are
        resolved only when they look local: absolute, starting with ``~`` or ``.``, or naming something under ``base``.
        """
        base = Path(base).expanduser().absolute()

        def resolve(value: Optional[str], always: bool) -> Optional[str]:
            if not value or not isinstance(value, str):
                return value
            path = Path(value).expanduser()
            if path.is_absolute():
                return str(path)
            if always or value.startswith((".", "~")) or (base / path).exists():
                return os.path.normpath(base / path)
            return value

        hf_dataset = self.hf_dataset
        if hf_dataset is not None and isinstance(hf_dataset, list):
            hf_dataset = [dict(entry, path=resolve(entry["path"], False))
                          if isinstance(entry, Mapping) and "path" in entry else entry
                          for entry in hf_dataset]
        return dataclasses.replace(
            self, model=resolve(self.model, False), data=resolve(self.data, False),
            hf_dataset=hf_dataset, adapter_path=resolve(self.adapter_path, True),
            resume_adapter_file=resolve(self.resume_adapter_file, True),
            # A hostfile next to the config (ssh names such as "mac1,mac2" name no file there).
            hosts=resolve(self.hosts, False))

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

    def with_field(self, name: str, value: Any) -> "TrainConfig":
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


# ----------------------------------------------------------------------------- field metadata


@dataclass(frozen=True)
class FieldSpec:
    """One entry of the form: what the field is, what it accepts, and its default.

    kinds: text, path, int, float, bool, choice, size (bytes, or text like "2GB"), list
    (comma-separated names), numbers (comma-separated numbers), table (a TOML inline table),
    tables (a TOML array of inline tables).
    """

    name: str
    group: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    optional: bool = False  # None (an empty field) is allowed
    mlx: bool = True  # an mlx_lm.lora option (False: tunedeck's own, absent from mlx-lm's YAML)
    check: Optional[Callable[[Any], Optional[str]]] = None  # a typed value -> what is wrong

    @property
    def flag(self) -> Optional[str]:
        """The mlx_lm.lora command-line flag, if the option has one."""
        return "--" + self.name.replace("_", "-") if self.name in _FLAGGED else None


def _positive(value) -> Optional[str]:
    return None if value >= 1 else "must be a positive integer"


def _all_or_positive(what: str) -> Callable[[int], Optional[str]]:
    return lambda value: None if value == -1 or value >= 1 else f"must be -1 ({what}) or a positive integer"


def _above_zero(value) -> Optional[str]:
    return None if value > 0 else "must be > 0"


def _not_negative(value) -> Optional[str]:
    return None if value >= 0 else "must be >= 0"


def _fraction(value) -> Optional[str]:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _seed(value) -> Optional[str]:
    return None if 0 <= value <= _SEED_MAX else f"must be between 0 and {_SEED_MAX}"


def _not_empty(value) -> Optional[str]:
    return None if value.strip() else "must not be empty"


def _run_name(value) -> Optional[str]:
    # The name becomes part of a directory name.
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", value):
        return None
    return "may contain only letters, digits, '.', '_' and '-', and must not start with '.'"


def _report_to(value) -> Optional[str]:
    items = [item.strip().lower() for item in value.split(",") if item.strip()]
    if all(item in REPORT_TO for item in items):
        return None
    return f"must be a comma-separated list of {', '.join(REPORT_TO)}"


_M, _L, _S, _E, _A, _D = GROUPS

FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("model", _M, "path", "Qwen/Qwen3-0.6b",
              "The base model: demo, a local MLX model directory, or the id of a Hugging Face "
              "model already in the local Hugging Face cache (tunedeck never downloads one).",
              check=_not_empty),
    FieldSpec("data", _M, "path", "mlx-community/WikiSQL",
              "A directory with train.jsonl, valid.jsonl and test.jsonl, or the id of a "
              "Hugging Face dataset with those files already in the local Hugging Face cache.",
              check=_not_empty),
    FieldSpec("name", _M, "text", None,
              "The run's name, used for its directory. Empty: made from the model and data names.",
              optional=True, mlx=False, check=_run_name),
    FieldSpec("prompt_feature", _M, "text", None,
              "The record key holding the prompt in prompt/completion data. Empty: prompt.",
              optional=True, check=_not_empty),
    FieldSpec("completion_feature", _M, "text", None,
              "The record key holding the completion in prompt/completion data. Empty: completion.",
              optional=True, check=_not_empty),
    FieldSpec("chat_feature", _M, "text", None,
              "The record key holding the list of chat messages. Empty: messages.",
              optional=True, check=_not_empty),
    FieldSpec("text_feature", _M, "text", None,
              "The record key holding plain text. Empty: text.",
              optional=True, check=_not_empty),
    FieldSpec("hf_dataset", _M, "tables", None,
              "Datasets to train on instead of data, read with the datasets package: a list of "
              "tables, each with a path (a local dataset directory, or a Hugging Face id in the "
              "local cache) and optionally train_split, valid_split, test_split, config and "
              "feature keys.",
              optional=True),
    FieldSpec("max_seq_length", _M, "int", 2048,
              "The longest example in tokens; longer ones are truncated (with a warning).",
              check=_positive),
    FieldSpec("fine_tune_type", _L, "choice", "lora",
              "lora trains small low-rank adapters; dora, weight-decomposed adapters; full "
              "updates every weight of the chosen layers (much more memory).",
              choices=FINE_TUNE_TYPES),
    FieldSpec("num_layers", _L, "int", 16,
              "How many transformer blocks, counted from the last, are trained. -1: all of them.",
              check=_all_or_positive("all layers")),
    FieldSpec("lora_parameters.rank", _L, "int", 8,
              "The rank of the adapter matrices: higher can learn more, and uses more memory.",
              check=_positive),
    FieldSpec("lora_parameters.scale", _L, "float", 20.0,
              "Multiplies the adapter's output; plays the part of alpha / rank in other tools.",
              check=_above_zero),
    FieldSpec("lora_parameters.dropout", _L, "float", 0.0,
              "The fraction of the adapter's inputs dropped at random while training.",
              check=_fraction),
    FieldSpec("lora_parameters.keys", _L, "list", None,
              "Which modules of each block get adapters, e.g. self_attn.q_proj, self_attn.v_proj. "
              "Empty: every linear layer.", optional=True),
    FieldSpec("mask_prompt", _L, "bool", False,
              "Learn from the completion (or the last chat message) only, not from the prompt. "
              "Not for plain-text data."),
    FieldSpec("iters", _S, "int", 1000,
              "How many iterations (batches) to train for. Leave empty when epochs is set.",
              optional=True, check=_positive),
    FieldSpec("epochs", _S, "float", None,
              "Train for this many passes over train.jsonl instead of a fixed iters "
              "(iters = epochs x rows // batch_size, rounded up). Leave empty when iters is set.",
              optional=True, mlx=False, check=_above_zero),
    FieldSpec("batch_size", _S, "int", 4, "Examples per iteration.", check=_positive),
    FieldSpec("grad_accumulation_steps", _S, "int", 1,
              "Batches whose gradients are averaged before each update: the effective batch is "
              "batch_size times this, for the memory of one batch.", check=_positive),
    FieldSpec("learning_rate", _S, "float", 1e-5,
              "The optimizer's step size. An LR schedule, when set, replaces it (the schedule's "
              "first argument is the starting rate).", check=_above_zero),
    FieldSpec("optimizer", _S, "choice", "adam", "The optimizer.", choices=OPTIMIZERS),
    FieldSpec("optimizer_config", _S, "table", {},
              "Extra options per optimizer, e.g. { adamw = { weight_decay = 0.01 } }."),
    FieldSpec("lr_schedule.name", _S, "choice", None,
              "How the learning rate changes during training. Empty: constant learning_rate.",
              choices=SCHEDULE_NAMES, optional=True),
    FieldSpec("lr_schedule.arguments", _S, "numbers", None,
              "The schedule's arguments, starting rate first. cosine_decay: init, decay_steps "
              "[, end]; linear_schedule: init, end, steps; exponential_decay: init, decay_rate; "
              "step_decay: init, decay_rate, step_size.", optional=True),
    FieldSpec("lr_schedule.warmup", _S, "int", 0,
              "Iterations of linear warm-up from warmup_init to the starting rate, before the "
              "schedule begins. 0: none.", check=_not_negative),
    FieldSpec("lr_schedule.warmup_init", _S, "float", 0.0,
              "The learning rate warm-up starts from.", check=_not_negative),
    FieldSpec("steps_per_report", _E, "int", 10,
              "Iterations between training-loss reports.", check=_positive),
    FieldSpec("steps_per_eval", _E, "int", 200,
              "Iterations between validations (there is always one at the first and the last "
              "iteration). Validation can take minutes on a large model.", check=_positive),
    FieldSpec("val_batches", _E, "int", 25,
              "Batches per validation. -1: the whole of valid.jsonl.",
              check=_all_or_positive("all batches")),
    FieldSpec("early_stopping_patience", _E, "int", None,
              "Stop after this many validations in a row without improvement. Empty: never stop "
              "early.", optional=True, mlx=False, check=_positive),
    FieldSpec("early_stopping_min_delta", _E, "float", 0.0,
              "How much the validation loss must fall to count as an improvement.",
              mlx=False, check=_not_negative),
    FieldSpec("save_every", _E, "int", 100,
              "Iterations between checkpoints (adapters.safetensors and a numbered copy).",
              check=_positive),
    FieldSpec("answer_checks", _E, "bool", False,
              "At each checkpoint, answer a few probe prompts greedily in a separate process and "
              "flag empty, repetitive or forgotten answers. Costs time per checkpoint on slow "
              "machines.", mlx=False),
    FieldSpec("adapter_path", _E, "path", "adapters",
              "Where adapter weights, checkpoints and adapter_config.json are written.",
              check=_not_empty),
    FieldSpec("resume_adapter_file", _E, "path", None,
              "Adapter weights to start from. mlx-lm loads the weights only: the optimizer, the "
              "iteration count and the schedule start over.", optional=True, check=_not_empty),
    FieldSpec("test", _E, "bool", False, "Compute the loss on test.jsonl after training."),
    FieldSpec("test_batches", _E, "int", 500,
              "Batches of the test set to evaluate. -1: all of test.jsonl.",
              check=_all_or_positive("all batches")),
    FieldSpec("grad_checkpoint", _A, "bool", False,
              "Recompute activations during the backward pass: less memory, slower iterations."),
    FieldSpec("seed", _A, "int", 0,
              "Seed of the random state: data order, dropout and adapter initialization.",
              check=_seed),
    FieldSpec("clear_cache_threshold", _A, "size", 0,
              "Clear MLX's memory cache between steps when it grows beyond this many bytes "
              "(e.g. 2GB). 0: never. tunedeck passes it to mlx-lm's trainer (a plain "
              "mlx_lm.lora 0.32 command accepts it but ignores it).",
              check=_not_negative),
    FieldSpec("report_to", _A, "text", None,
              "Also log to wandb, swanlab or both (comma-separated); the package must be "
              "installed.", optional=True, check=_report_to),
    FieldSpec("project_name", _A, "text", None,
              "The project name in wandb or swanlab.", optional=True, check=_not_empty),
    FieldSpec("trust_remote_code", _A, "bool", False,
              "Let the model's repository run its own Python code when loading. Only for "
              "models you trust."),
    FieldSpec("ranks", _D, "int", None,
              "Training processes on this machine, each taking every N-th batch (mlx's "
              "data-parallel training). Empty: one process, or one per host in hosts.",
              optional=True, mlx=False, check=_positive),
    FieldSpec("hosts", _D, "text", None,
              "A hostfile in mlx's format (JSON), or ssh hosts separated by commas; the first "
              "is this machine. Empty: train on this machine only.", optional=True, mlx=False,
              check=_not_empty),
    FieldSpec("backend", _D, "choice", "ring",
              "How the ranks talk: ring (TCP, also over Thunderbolt), jaccl (Thunderbolt 5 "
              "RDMA) or mpi.", choices=BACKENDS, mlx=False),
)

_SPECS = {spec.name: spec for spec in FIELDS}


def field_spec(name: str) -> FieldSpec:
    """The ``FieldSpec`` of a field name (dotted for table members); KeyError if there is none."""
    return _SPECS[name]


# ----------------------------------------------------------------------------- checking values


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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


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


def _check_schedule(schedule: LrSchedule) -> tuple[Optional[list], list[_Problem]]:
    """Arguments that fit the schedule's signature, normalized, or what is wrong with them."""
    params = SCHEDULE_ARGUMENTS[schedule.name]
    args = schedule.arguments
    required = sum(1 for _, _, req in params if req)
    where = ("lr_schedule", "arguments")
    if not required <= len(args) <= len(params):
        usage = ", ".join(n for n, _, req in params if req)
        usage += "".join(f"[, {n}]" for n, _, req in params if not req)
        return None, [_Problem(where, f"lr_schedule.arguments: {schedule.name} takes {usage} "
                                      f"(got {_plural(len(args), 'value')})")]
    out = []
    for (arg, kind, _), value in zip(params, args):
        if kind == "int" and (not isinstance(value, int) or value < 1):
            return None, [_Problem(where, f"lr_schedule.arguments: {arg} of {schedule.name} must be "
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
        from .distributed import check_batch  # the world size a hostfile gives needs reading it

        batch_problem = check_batch(cfg)
        if batch_problem is not None:
            field_name = "batch_size" if batch_problem.startswith("batch_size") else "hosts"
            problems.append(_Problem((field_name,), batch_problem))
    if "lr_schedule.name" in good and "lr_schedule.arguments" in good:
        arguments, found = _check_schedule(
            LrSchedule(good["lr_schedule.name"], good["lr_schedule.arguments"]))
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


def _schedule_dict(schedule: LrSchedule, keep_defaults: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": schedule.name, "arguments": list(schedule.arguments)}
    if keep_defaults or schedule.warmup:
        out["warmup"] = schedule.warmup
    if keep_defaults or schedule.warmup_init:
        out["warmup_init"] = schedule.warmup_init
    return out


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


# ----------------------------------------------------------------------------- TOML

_TOML_HEADER = (
    "# tunedeck training config. Keys are mlx_lm.lora's options (see `mlx_lm.lora --help`);\n"
    "# name, epochs, early_stopping_*, answer_checks, ranks, hosts and backend are tunedeck's own.\n"
    "# Absent keys keep their defaults.\n"
)


def _toml_module():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
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
            was_table = dataclasses.asdict(was) if was not in (None, _MISSING) else {}
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


# ----------------------------------------------------------------------------- YAML

_YAML_HEADER = "# mlx_lm.lora configuration written by tunedeck. Run: mlx_lm.lora -c THIS_FILE\n"

# PyYAML follows YAML 1.1, where 1e-5 (no dot) and 1.0e5 (unsigned exponent) are strings.
# mlx-lm widens its loader's float rule so they are numbers; tunedeck reads the same way, and its
# dumper quotes strings that this rule would otherwise turn into numbers.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


def _yaml():
    import yaml

    return yaml


@functools.lru_cache(maxsize=None)
def _yaml_classes():
    yaml = _yaml()

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
        yaml = _yaml()
        try:
            return yaml.compose(text, Loader=_yaml_loader())
        except yaml.YAMLError:
            return None

    def locate(path: tuple) -> Optional[int]:
        yaml = _yaml()
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


# ----------------------------------------------------------------------------- form text


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
