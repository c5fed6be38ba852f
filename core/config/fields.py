"""The field table: every option of a training config, its group, kind, default and checks.

The form is built from ``FIELDS``; TOML, YAML, the command line and the checks read the same
table, so an option is added in one place. The static tables of schedules and optimizer options
are checked against the installed mlx by the tests (mlx is never imported here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

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

# mlx_lm.lora options that have a command-line flag (--name-with-dashes).
_FLAGGED = frozenset((
    "model", "data", "fine_tune_type", "optimizer", "mask_prompt", "num_layers", "batch_size",
    "iters", "val_batches", "learning_rate", "steps_per_report", "steps_per_eval",
    "grad_accumulation_steps", "resume_adapter_file", "adapter_path", "save_every", "test",
    "test_batches", "max_seq_length", "grad_checkpoint", "clear_cache_threshold", "report_to",
    "project_name", "seed", "trust_remote_code",
))

_SEED_MAX = 2**32 - 1  # numpy's seed range, which mlx-lm seeds with args.seed


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
