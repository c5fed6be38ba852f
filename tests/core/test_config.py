"""TrainConfig: what a user sees when a config is read, checked, written, or turned into a run."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunedeck.core.config import (
    FIELDS,
    GROUPS,
    OPTIMIZER_OPTIONS,
    SCHEDULE_ARGUMENTS,
    ConfigError,
    LoraParameters,
    LrSchedule,
    TrainConfig,
    field_spec,
    format_field,
    validate_field,
)
from tunedeck.core.errors import BadInput

TUNEDECK_ONLY = ("name", "epochs", "early_stopping_patience", "early_stopping_min_delta", "answer_checks",
                 "ranks", "hosts", "backend")


@pytest.fixture(scope="module")
def mlx_lora():
    import mlx_lm.lora

    return mlx_lm.lora


def everything(**changes) -> TrainConfig:
    """A config that sets every option away from its default."""
    cfg = TrainConfig(
        model="models/gemma-3-1b-it-4bit", data="data", name="persona-v2",
        prompt_feature="question", completion_feature="answer", chat_feature="conversation",
        text_feature="body", hf_dataset=[{"path": "user/ds", "train_split": "train[:90%]",
                                          "config": {"name": "en"}}],
        max_seq_length=512, fine_tune_type="dora", num_layers=-1,
        lora_parameters=LoraParameters(rank=16, scale=10.0, dropout=0.05,
                                       keys=["self_attn.q_proj", "self_attn.v_proj"]),
        mask_prompt=True, iters=600, batch_size=2, grad_accumulation_steps=4,
        learning_rate=2e-4, optimizer="adamw",
        optimizer_config={"adamw": {"weight_decay": 0.05, "betas": [0.9, 0.98]}},
        lr_schedule=LrSchedule("cosine_decay", [2e-4, 600, 1e-6], warmup=50, warmup_init=1e-7),
        steps_per_report=5, steps_per_eval=50, val_batches=-1, early_stopping_patience=3,
        early_stopping_min_delta=0.01, save_every=25, adapter_path="out/adapters",
        resume_adapter_file="old/adapters.safetensors", test=True, test_batches=-1,
        grad_checkpoint=True, seed=7, clear_cache_threshold=2_000_000_000, report_to="wandb",
        project_name="tunedeck", trust_remote_code=True,
    )
    return dataclasses.replace(cfg, **changes)


def mlx_only(cfg: TrainConfig) -> TrainConfig:
    """What survives a trip through mlx-lm: its own options, iters resolved."""
    defaults = TrainConfig()
    return dataclasses.replace(cfg, iters=cfg.total_iters(),
                               **{k: getattr(defaults, k) for k in TUNEDECK_ONLY})


def load_error(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    return info.value


# ----------------------------------------------------------------------------- defaults


def test_defaults_are_mlx_lm_defaults(mlx_lora):
    assert TrainConfig().problems() == []
    assert TrainConfig().to_mlx_args() == {**mlx_lora.CONFIG_DEFAULTS, "train": True}


def test_to_mlx_args_keys_are_config_defaults_plus_the_yaml_only_keys(mlx_lora):
    extras = {"prompt_feature", "completion_feature", "chat_feature", "text_feature", "hf_dataset"}
    assert set(everything().to_mlx_args()) == set(mlx_lora.CONFIG_DEFAULTS) | extras
    # Unset feature keys must be absent: mlx-lm reads them with getattr(args, key, default).
    assert set(everything(prompt_feature=None, hf_dataset=None).to_mlx_args()) == (
        set(mlx_lora.CONFIG_DEFAULTS) | extras - {"prompt_feature", "hf_dataset"})


def test_to_mlx_args_values():
    args = everything().to_mlx_args()
    assert args["lora_parameters"] == {"rank": 16, "scale": 10.0, "dropout": 0.05,
                                       "keys": ["self_attn.q_proj", "self_attn.v_proj"]}
    assert args["lr_schedule"] == {"name": "cosine_decay", "arguments": [2e-4, 600, 1e-6],
                                   "warmup": 50, "warmup_init": 1e-7}
    assert args["optimizer_config"] == {"adam": {}, "adamw": {"weight_decay": 0.05,
                                                              "betas": [0.9, 0.98]},
                                        "muon": {}, "sgd": {}, "adafactor": {}}
    assert args["train"] is True and args["config"] is None and args["iters"] == 600
    assert not set(TUNEDECK_ONLY) & set(args)


# ----------------------------------------------------------------------------- TOML


def test_toml_round_trip_of_every_option():
    cfg = everything()
    assert TrainConfig.from_toml_text(cfg.to_toml()) == cfg
    with_epochs = everything(iters=None, epochs=2.5)
    assert TrainConfig.from_toml_text(with_epochs.to_toml()) == with_epochs
    assert TrainConfig.from_toml_text(TrainConfig().to_toml()) == TrainConfig()


def test_toml_holds_only_what_differs_from_the_defaults():
    cfg = TrainConfig(model="models/qwen", data="data", learning_rate=1e-4,
                      lora_parameters=LoraParameters(rank=16))
    body = [line for line in cfg.to_toml().splitlines() if line and not line.startswith("#")]
    assert body == ['model = "models/qwen"', 'data = "data"', "iters = 1000",
                    "learning_rate = 0.0001", "[lora_parameters]", "rank = 16"]


def test_toml_schema_tables(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent("""\
        model = "models/qwen"
        data = "data"
        epochs = 3
        optimizer = "adamw"
        early_stopping_patience = 2

        [lora_parameters]
        rank = 4
        keys = ["self_attn.q_proj"]

        [lr_schedule]
        name = "linear_schedule"
        arguments = [1e-4, 1e-6, 100]
        warmup = 10

        [optimizer_config.adamw]
        weight_decay = 0

        [[hf_dataset]]
        path = "user/one"

        [[hf_dataset]]
        path = "user/two"
        test_split = "test"
        """))
    cfg = TrainConfig.from_toml(path)
    assert cfg.epochs == 3.0 and cfg.iters is None and cfg.early_stopping_patience == 2
    assert cfg.lora_parameters == LoraParameters(rank=4, keys=["self_attn.q_proj"])
    assert cfg.lr_schedule == LrSchedule("linear_schedule", [1e-4, 1e-6, 100], warmup=10)
    assert cfg.optimizer_config == {"adamw": {"weight_decay": 0.0}}
    assert cfg.hf_dataset == [{"path": "user/one"}, {"path": "user/two", "test_split": "test"}]
    loaded = path.read_text()
    assert cfg.write_toml(path, loaded_text=loaded) == loaded  # unchanged values: the same text
    changed = dataclasses.replace(cfg, hf_dataset=None, lr_schedule=None)
    changed.write_toml(path, loaded_text=loaded)
    assert TrainConfig.from_toml(path) == changed
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


# ----------------------------------------------------------------------------- mlx-lm YAML

MLX_YAML = """\
model: "mlx-community/Llama-3.2-1B-Instruct-4bit"
train: true
fine_tune_type: lora
optimizer: AdamW
optimizer_config:
  adam: {}
  adamw:
    weight_decay: 1e-2
data: "data/"
seed: 0
num_layers: 8
batch_size: 4
iters: 1000
val_batches: 25
learning_rate: 1e-5
steps_per_report: 10
steps_per_eval: 200
resume_adapter_file: null
adapter_path: "adapters"
save_every: 100
test: false
test_batches: 100
max_seq_length: 2048
grad_checkpoint: false
config: other.yaml
lr_schedule:
  name: cosine_decay
  warmup: 100
  warmup_init: 1e-7
  arguments: [1e-5, 1000, 1e-7]
lora_parameters:
  keys: ["self_attn.q_proj", "self_attn.v_proj"]
  rank: 8
  scale: 20.0
  dropout: 0.0
"""


def test_reads_the_yaml_mlx_lm_reads(tmp_path, mlx_lora):
    path = tmp_path / "lora_config.yaml"
    path.write_text(MLX_YAML)
    cfg = TrainConfig.from_mlx_yaml(path)
    assert cfg.learning_rate == 1e-5 and isinstance(cfg.learning_rate, float)
    assert cfg.optimizer == "adamw"  # mlx-lm lowercases the optimizer name
    assert cfg.optimizer_config == {"adamw": {"weight_decay": 0.01}}
    assert cfg.lr_schedule == LrSchedule("cosine_decay", [1e-5, 1000, 1e-7], 100, 1e-7)
    assert cfg.num_layers == 8 and cfg.test_batches == 100 and cfg.resume_adapter_file is None
    # Same values as mlx-lm's own loader sees, option by option.
    import yaml

    theirs = yaml.load(MLX_YAML, mlx_lora.yaml_loader)
    ours = cfg.to_mlx_args()
    for key in ("learning_rate", "lr_schedule", "lora_parameters", "data", "num_layers"):
        assert ours[key] == theirs[key], key


def test_yaml_round_trips_both_ways():
    cfg = TrainConfig.from_mlx_yaml_text(MLX_YAML)
    assert TrainConfig.from_mlx_yaml_text(cfg.to_mlx_yaml()) == cfg
    rich = mlx_only(everything())
    assert TrainConfig.from_mlx_yaml_text(rich.to_mlx_yaml()) == rich


def test_written_yaml_is_what_mlx_lm_loads(mlx_lora):
    import yaml

    cfg = everything(model="1e5")  # a string that would read as a number if written bare
    loaded = yaml.load(cfg.to_mlx_yaml(), mlx_lora.yaml_loader)
    expected = {k: v for k, v in cfg.to_mlx_args().items() if v is not None}
    assert loaded == expected
    assert loaded["model"] == "1e5"


def test_yaml_leaves_out_tunedeck_options_and_resolves_epochs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "a"}\n' * 10)
    cfg = everything(data=str(data), iters=None, epochs=2, batch_size=4, hf_dataset=None)
    import yaml

    written = yaml.safe_load(cfg.to_mlx_yaml())
    assert written["iters"] == 4
    assert not set(TUNEDECK_ONLY) & set(written)


def test_yaml_null_means_default_and_empty_file_is_all_defaults():
    assert TrainConfig.from_mlx_yaml_text("batch_size: null\nlora_parameters:\n  rank: ~\n") == TrainConfig()
    assert TrainConfig.from_mlx_yaml_text("") == TrainConfig()


def test_load_picks_the_format_by_suffix(tmp_path):
    cfg = everything()
    cfg.write_toml(tmp_path / "run.toml")
    mlx_only(cfg).write_mlx_yaml(tmp_path / "lora.yml")
    assert TrainConfig.load(tmp_path / "run.toml") == cfg
    assert TrainConfig.load(tmp_path / "lora.yml") == mlx_only(cfg)
    with pytest.raises(BadInput, match=r"cfg\.json: expected a \.toml \(tunedeck\) or \.yaml "):
        TrainConfig.load(tmp_path / "cfg.json")


# ----------------------------------------------------------------------------- messages

MESSAGES = [
    ({"learning_rate": -0.1}, "learning_rate: must be > 0 (got -0.1)"),
    ({"learning_rate": "1e-5"}, "learning_rate: expected a number (got '1e-5')"),
    ({"learning_rate": True}, "learning_rate: expected a number (got true)"),
    ({"fine_tune_type": "qlora"}, "fine_tune_type: must be one of lora, dora, full (got 'qlora')"),
    ({"optimizer": "lion"},
     "optimizer: must be one of adam, adamw, muon, sgd, adafactor (got 'lion')"),
    ({"batch_size": "four"}, "batch_size: expected an integer (got 'four')"),
    ({"batch_size": 4.0}, "batch_size: expected an integer (got 4.0)"),
    ({"batch_size": 0}, "batch_size: must be a positive integer (got 0)"),
    ({"iters": 0}, "iters: must be a positive integer (got 0)"),
    ({"steps_per_report": 0}, "steps_per_report: must be a positive integer (got 0)"),
    ({"steps_per_eval": -5}, "steps_per_eval: must be a positive integer (got -5)"),
    ({"save_every": 0}, "save_every: must be a positive integer (got 0)"),
    ({"grad_accumulation_steps": 0},
     "grad_accumulation_steps: must be a positive integer (got 0)"),
    ({"max_seq_length": 0}, "max_seq_length: must be a positive integer (got 0)"),
    ({"num_layers": 0}, "num_layers: must be -1 (all layers) or a positive integer (got 0)"),
    ({"val_batches": -2}, "val_batches: must be -1 (all batches) or a positive integer (got -2)"),
    ({"test_batches": 0}, "test_batches: must be -1 (all batches) or a positive integer (got 0)"),
    ({"mask_prompt": "yes"}, "mask_prompt: expected true or false (got 'yes')"),
    ({"model": ""}, "model: must not be empty (got '')"),
    ({"data": 3}, "data: expected a string (got 3)"),
    ({"seed": -1}, "seed: must be between 0 and 4294967295 (got -1)"),
    ({"report_to": "tensorboard"},
     "report_to: must be a comma-separated list of wandb, swanlab (got 'tensorboard')"),
    ({"clear_cache_threshold": "lots"},
     "clear_cache_threshold: expected a number of bytes, such as 2000000000 or '2GB' (got 'lots')"),
    ({"name": "my run"}, "name: may contain only letters, digits, '.', '_' and '-', and must not "
                         "start with '.' (got 'my run')"),
    ({"epochs": 0}, "epochs: must be > 0 (got 0)"),
    ({"iters": 100, "epochs": 2}, "epochs: set either iters or epochs, not both (iters = 100)"),
    ({"early_stopping_patience": 0}, "early_stopping_patience: must be a positive integer (got 0)"),
    ({"early_stopping_min_delta": -0.1}, "early_stopping_min_delta: must be >= 0 (got -0.1)"),
    ({"lora_parameters": {"rank": 0}}, "lora_parameters.rank: must be a positive integer (got 0)"),
    ({"lora_parameters": {"rank": 8.5}}, "lora_parameters.rank: expected an integer (got 8.5)"),
    ({"lora_parameters": {"scale": 0}}, "lora_parameters.scale: must be > 0 (got 0)"),
    ({"lora_parameters": {"dropout": 1.0}}, "lora_parameters.dropout: must be in [0, 1) (got 1.0)"),
    ({"lora_parameters": {"keys": "q_proj"}},
     "lora_parameters.keys: expected a list of module names (got 'q_proj')"),
    ({"lora_parameters": 8},
     "lora_parameters: expected a table with rank, scale, dropout, keys (got 8)"),
    ({"lora_parameters": {"alpha": 16}},
     "unknown key 'lora_parameters.alpha' (mlx-lm's LoRA has no alpha; set scale, which works "
     "like alpha / rank)"),
    ({"lr_schedule": {"name": "cosine", "arguments": [1e-5, 100]}},
     "lr_schedule.name: must be one of cosine_decay, exponential_decay, linear_schedule, "
     "step_decay (got 'cosine')"),
    ({"lr_schedule": {"arguments": [1e-5, 100]}},
     "lr_schedule.name: required, one of cosine_decay, exponential_decay, linear_schedule, "
     "step_decay"),
    ({"lr_schedule": {"name": "cosine_decay"}},
     "lr_schedule.arguments: required, a list of numbers, the starting learning rate first"),
    ({"lr_schedule": {"name": "cosine_decay", "arguments": [1e-5]}},
     "lr_schedule.arguments: cosine_decay takes init, decay_steps[, end] (got 1 value)"),
    ({"lr_schedule": {"name": "step_decay", "arguments": [1e-5, 0.9, 10, 1]}},
     "lr_schedule.arguments: step_decay takes init, decay_rate, step_size (got 4 values)"),
    ({"lr_schedule": {"name": "cosine_decay", "arguments": [1e-5, 10.5]}},
     "lr_schedule.arguments: decay_steps of cosine_decay must be a positive integer (got 10.5)"),
    ({"lr_schedule": {"name": "exponential_decay", "arguments": [-1e-5, 0.9]}},
     "lr_schedule.arguments: init, the starting learning rate, must be >= 0 (got -1e-05)"),
    ({"lr_schedule": {"name": "cosine_decay", "arguments": ["1e-5", 10]}},
     "lr_schedule.arguments: expected a list of numbers (got ['1e-5', 10])"),
    ({"lr_schedule": {"name": "cosine_decay", "arguments": [1e-5, 10], "warmup": -1}},
     "lr_schedule.warmup: must be >= 0 (got -1)"),
    ({"lr_schedule": {"name": "cosine_decay", "arguments": [1e-5, 10], "warmup": 1.5}},
     "lr_schedule.warmup: expected an integer (got 1.5)"),
    ({"optimizer_config": {"adamx": {}}},
     "unknown key 'optimizer_config.adamx' (did you mean 'optimizer_config.adam'?)"),
    ({"optimizer_config": {"adamw": {"weight_decy": 0.1}}},
     "unknown key 'optimizer_config.adamw.weight_decy' (did you mean "
     "'optimizer_config.adamw.weight_decay'?)"),
    ({"optimizer_config": {"adamw": {"betas": 0.9}}},
     "optimizer_config.adamw.betas: expected two numbers, such as [0.9, 0.999] (got 0.9)"),
    ({"optimizer_config": {"sgd": {"learning_rate": 0.1}}},
     "optimizer_config.sgd.learning_rate: set the top-level learning_rate or an lr_schedule "
     "instead"),
    ({"hf_dataset": [{"train_split": "train"}]},
     "hf_dataset[0].path: required, the dataset's Hugging Face id"),
    ({"hf_dataset": "user/ds"}, "hf_dataset: expected a table or a list of tables (got 'user/ds')"),
    ({"learning_rat": 1e-4}, "unknown key 'learning_rat' (did you mean 'learning_rate'?)"),
    ({"lr": 1e-4}, "unknown key 'lr' (did you mean 'learning_rate'?)"),
    ({"rank": 16}, "unknown key 'rank' (did you mean 'lora_parameters.rank'?)"),
    ({"warmup": 100}, "unknown key 'warmup' (did you mean 'lr_schedule.warmup'?)"),
    ({"bogus": 1}, "unknown key 'bogus'"),
]


@pytest.mark.parametrize("data, message", MESSAGES, ids=[m for _, m in MESSAGES])
def test_each_problem_names_the_field_and_what_is_allowed(data, message):
    error = load_error(data)
    assert isinstance(error, BadInput)
    assert error.problems == [message]
    assert str(error) == message


def test_problems_of_a_config_built_in_code():
    cfg = TrainConfig(learning_rate=-0.1, batch_size="four",
                      lora_parameters=LoraParameters(rank=0), iters=None, epochs=None)
    assert cfg.problems() == [
        "lora_parameters.rank: must be a positive integer (got 0)",
        "batch_size: expected an integer (got 'four')",
        "learning_rate: must be > 0 (got -0.1)",
        "iters: set iters or epochs",
    ]
    with pytest.raises(ConfigError, match=r"^lora_parameters.rank: .* \(and 3 more problems\)$"):
        cfg.validate()
    with pytest.raises(ConfigError):
        cfg.to_toml()  # nothing invalid is ever written


def test_toml_messages_carry_file_and_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent("""\
        model = "models/qwen"
        learning_rat = 1e-4
        batch_size = "four"

        [lora_parameters]
        rank = 0

        [optimizer_config.adamw]
        weight_decy = 0.1

        [lr_schedule]
        name = "cosine_decay"
        """))
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_toml(path)
    assert info.value.problems == [
        f"{path}:2: unknown key 'learning_rat' (did you mean 'learning_rate'?)",
        f"{path}:3: batch_size: expected an integer (got 'four')",
        f"{path}:6: lora_parameters.rank: must be a positive integer (got 0)",
        f"{path}:9: unknown key 'optimizer_config.adamw.weight_decy' "
        "(did you mean 'optimizer_config.adamw.weight_decay'?)",
        f"{path}:11: lr_schedule.arguments: required, a list of numbers, the starting learning "
        "rate first",
    ]
    assert str(info.value) == (f"{path}:2: unknown key 'learning_rat' (did you mean "
                               "'learning_rate'?) (and 4 more problems)")


def test_yaml_messages_carry_file_and_line(tmp_path):
    path = tmp_path / "lora.yaml"
    path.write_text(textwrap.dedent("""\
        model: models/qwen
        fine_tune_type: qlora
        lora_parameters:
          rank: 8
          dropout: 1.5
        hf_dataset:
          - path: user/one
          - train_spilt: train
        """))
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_mlx_yaml(path)
    assert info.value.problems == [
        f"{path}:2: fine_tune_type: must be one of lora, dora, full (got 'qlora')",
        f"{path}:5: lora_parameters.dropout: must be in [0, 1) (got 1.5)",
        f"{path}:8: unknown key 'hf_dataset[1].train_spilt' (did you mean "
        "'hf_dataset[1].train_split'?)",
        f"{path}:8: hf_dataset[1].path: required, the dataset's Hugging Face id",
    ]


def test_file_level_messages(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(BadInput, match=rf"^{re.escape(str(missing))}: no such file$"):
        TrainConfig.from_toml(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "m"\ndata = \n')
    with pytest.raises(BadInput, match=rf"^{re.escape(str(bad))}:2: invalid TOML: "):
        TrainConfig.from_toml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- model\n- data\n")
    with pytest.raises(BadInput, match=rf"^{re.escape(str(listing))}: expected a mapping of mlx_lm.lora options$"):
        TrainConfig.from_mlx_yaml(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: m\ndata: [a,\n")
    with pytest.raises(BadInput, match=rf"^{re.escape(str(broken))}:3: invalid YAML: "):
        TrainConfig.from_mlx_yaml(broken)
    with pytest.raises(BadInput, match=r"^cfg: unknown key 'x'$"):
        TrainConfig.from_dict({"x": 1}, source="cfg")


# ----------------------------------------------------------------------------- command line


def test_every_flag_rendered_is_one_mlx_lm_has(mlx_lora):
    dests = {a.dest for a in mlx_lora.build_parser()._actions} - {"help", "train", "config"}
    assert {spec.name for spec in FIELDS if spec.flag} == dests
    for spec in FIELDS:
        if spec.flag:
            assert spec.flag in mlx_lora.build_parser()._option_string_actions


def run_mlx_main(mlx_lora, monkeypatch, argv: list[str]) -> dict:
    """The args mlx_lm.lora's own main() builds from argv, captured before it loads a model."""
    captured = {}
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # main() sets it; restored afterwards
    monkeypatch.setattr(mlx_lora, "run", lambda args: captured.update(vars(args)))
    monkeypatch.setattr(sys, "argv", argv)
    mlx_lora.main()
    return captured


@pytest.mark.parametrize("cfg", [
    TrainConfig(),
    TrainConfig(model="models/my model's dir", data="data dir", num_layers=-1, val_batches=-1,
                learning_rate=3e-4, mask_prompt=True, grad_checkpoint=True, test=True,
                trust_remote_code=True, clear_cache_threshold=500_000_000, report_to="wandb",
                fine_tune_type="full", optimizer="sgd", seed=3),
    everything(),
], ids=["defaults", "flags only", "with a config file"])
def test_command_reproduces_the_config_in_mlx_lm(cfg, tmp_path, monkeypatch, mlx_lora):
    config_file = tmp_path / "mlx_lm.yaml"
    command = cfg.to_command(config_file)
    assert command.argv[0] == "mlx_lm.lora" and "--train" in command.argv
    assert shlex.split(command.text) == command.argv
    if command.config_file:
        assert command.argv[1:3] == ["-c", str(config_file)]
        cfg.write_mlx_yaml(config_file)
    args = run_mlx_main(mlx_lora, monkeypatch, command.argv)
    assert args.pop("config") == command.config_file
    expected = cfg.to_mlx_args()
    expected.pop("config")
    assert args == expected
    assert TrainConfig.from_dict(args) == mlx_only(cfg)


def test_command_needs_a_config_file_only_for_options_without_flags():
    assert TrainConfig(learning_rate=1e-4).to_command().config_file is None
    for changes in ({"lora_parameters": LoraParameters(rank=4)},
                    {"lr_schedule": LrSchedule("exponential_decay", [1e-4, 0.999])},
                    {"optimizer_config": {"sgd": {"momentum": 0.9}}},
                    {"text_feature": "body"},
                    {"hf_dataset": [{"path": "user/ds"}]}):
        command = dataclasses.replace(TrainConfig(), **changes).to_command("run/mlx_lm.yaml")
        assert command.text.startswith("mlx_lm.lora -c run/mlx_lm.yaml --train "), changes
    assert TrainConfig(model="m", data="d", iters=5).to_command().text == (
        "mlx_lm.lora --train --model m --data d --iters 5")


def test_command_and_yaml_train_the_tiny_model(tiny_model, persona_data, tmp_path):
    cfg = TrainConfig(
        model=str(tiny_model), data=str(persona_data), num_layers=2, iters=3, batch_size=2, val_batches=1,
        steps_per_eval=100, save_every=100, adapter_path=str(tmp_path / "adapters"),
        lora_parameters=LoraParameters(rank=4, keys=["self_attn.q_proj", "self_attn.v_proj"]),
        lr_schedule=LrSchedule("cosine_decay", [1e-3, 3], warmup=1), optimizer="adamw",
        optimizer_config={"adamw": {"weight_decay": 0.0}}, mask_prompt=True)
    command = cfg.to_command(tmp_path / "mlx_lm.yaml")
    cfg.write_mlx_yaml(command.config_file)
    argv = [sys.executable, "-m", "mlx_lm", "lora", *command.argv[1:]]
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((tmp_path / "adapters" / "adapter_config.json").read_text())
    assert saved["lora_parameters"] == cfg.to_mlx_args()["lora_parameters"]
    assert saved["lr_schedule"] == cfg.to_mlx_args()["lr_schedule"]
    assert saved["optimizer"] == "adamw" and saved["iters"] == 3 and saved["mask_prompt"] is True
    assert (tmp_path / "adapters" / "adapters.safetensors").exists()


# ----------------------------------------------------------------------------- epochs


def write_train(data: Path, text: str) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.jsonl").write_text(text)
    return data


def test_counts_non_empty_lines_of_train_jsonl(tmp_path):
    data = write_train(tmp_path / "data", '{"text": "a"}\n\n{"text": "b"}\n   \n{"text": "c"}')
    assert TrainConfig(data=str(data)).count_train_rows() == 3


def test_epochs_become_iters(tmp_path):
    cfg = TrainConfig(iters=None, epochs=3, batch_size=4)
    assert cfg.iters_for_epochs(10) == 6  # 2 whole batches per pass; the remainder is dropped
    assert dataclasses.replace(cfg, epochs=0.5).iters_for_epochs(10) == 1
    assert dataclasses.replace(cfg, epochs=0.1, batch_size=10).iters_for_epochs(300) == 3
    with pytest.raises(BadInput, match=r"^batch_size: must be a positive integer \(got 0\)$"):
        dataclasses.replace(cfg, batch_size=0).iters_for_epochs(10)
    with pytest.raises(BadInput, match=r"^epochs: the training split has 3 rows, fewer than "
                                       r"batch_size \(4\)$"):
        cfg.iters_for_epochs(3)
    data = write_train(tmp_path / "data", '{"text": "x"}\n' * 10)
    cfg = dataclasses.replace(cfg, data=str(data))
    assert cfg.total_iters() == 6
    assert cfg.to_mlx_args()["iters"] == 6
    assert "--iters 6" in cfg.to_command().text
    body = [line for line in cfg.to_toml().splitlines() if line and not line.startswith("#")]
    assert body == [f'model = "{cfg.model}"', f'data = "{cfg.data}"', "epochs = 3.0"]


def test_epochs_without_a_local_train_split(tmp_path):
    cfg = TrainConfig(iters=None, epochs=1, data=str(tmp_path / "missing"))
    with pytest.raises(BadInput, match=r"^epochs: .*train\.jsonl not found; epochs needs a local "
                                       r"data directory with train\.jsonl \(set iters instead\)$"):
        cfg.to_mlx_args()


def test_a_file_with_epochs_alone_does_not_clash_with_the_default_iters():
    cfg = TrainConfig.from_toml_text('model = "m"\ndata = "d"\nepochs = 2\n')
    assert (cfg.iters, cfg.epochs) == (None, 2.0)
    with pytest.raises(ConfigError, match=r"^run.toml:3: epochs: set either iters or epochs"):
        TrainConfig.from_toml_text('model = "m"\niters = 10\nepochs = 2\n', "run.toml")


# ----------------------------------------------------------------------------- paths and names


def test_resolve_paths(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "models" / "qwen").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = TrainConfig(model="models/qwen", data="./data", adapter_path="adapters",
                      resume_adapter_file="../old/adapters.safetensors")
    before = dataclasses.replace(cfg)
    resolved = cfg.resolve_paths(project)
    assert cfg == before  # the config a form shows and saves keeps its paths as typed
    assert resolved.model == str(project / "models" / "qwen")
    assert resolved.data == str(project / "data")
    assert resolved.adapter_path == str(project / "adapters")
    assert resolved.resume_adapter_file == str(tmp_path / "old" / "adapters.safetensors")
    (project / "local-ds").mkdir()
    datasets = TrainConfig(hf_dataset=[{"path": "local-ds"}, {"path": "user/ds"}])
    assert datasets.resolve_paths(project).hf_dataset == [{"path": str(project / "local-ds")},
                                                          {"path": "user/ds"}]
    assert datasets.hf_dataset == [{"path": "local-ds"}, {"path": "user/ds"}]
    hub = TrainConfig(model="mlx-community/Qwen3-0.6B-4bit", data="~/datasets/x",
                      adapter_path="/abs/adapters").resolve_paths(project)
    assert hub.model == "mlx-community/Qwen3-0.6B-4bit"  # not a local path: a Hugging Face id
    assert hub.data == str(tmp_path / "home" / "datasets" / "x")
    assert hub.adapter_path == "/abs/adapters"


def test_run_name():
    assert TrainConfig().run_name == "Qwen3-0.6b-WikiSQL"
    assert TrainConfig(model="/models/gemma-3-1b-it-4bit/", data="data").run_name == "gemma-3-1b-it-4bit"
    assert TrainConfig(name="persona-v2").run_name == "persona-v2"
    assert TrainConfig(model=".", data=".").run_name == "run"


# ----------------------------------------------------------------------------- the form


def test_fields_cover_every_option_with_its_default():
    names = [spec.name for spec in FIELDS]
    expected = [f.name for f in dataclasses.fields(TrainConfig)
                if f.name not in ("lora_parameters", "lr_schedule")]
    expected += [f"lora_parameters.{f.name}" for f in dataclasses.fields(LoraParameters)]
    expected += [f"lr_schedule.{f.name}" for f in dataclasses.fields(LrSchedule)]
    assert sorted(names) == sorted(expected)
    assert [g for g in GROUPS if any(s.group == g for s in FIELDS)] == list(GROUPS)
    defaults, schedule = TrainConfig(), LrSchedule()
    for spec in FIELDS:
        if spec.name.startswith("lr_schedule."):
            assert spec.default == getattr(schedule, spec.name.split(".")[1]), spec.name
        else:
            assert spec.default == defaults.get_field(spec.name), spec.name
        assert spec.group in GROUPS and spec.help.endswith("."), spec.name
        assert bool(spec.choices) == (spec.kind == "choice"), spec.name
        assert spec.mlx == (spec.name not in TUNEDECK_ONLY), spec.name


@pytest.mark.parametrize("name, text, result", [
    ("batch_size", " 8 ", (8, None)),
    ("batch_size", "four", (None, "batch_size: expected an integer (got 'four')")),
    ("batch_size", "0", (None, "batch_size: must be a positive integer (got 0)")),
    ("learning_rate", "1e-4", (1e-4, None)),
    ("learning_rate", "-0.1", (None, "learning_rate: must be > 0 (got -0.1)")),
    ("learning_rate", "fast", (None, "learning_rate: expected a number (got 'fast')")),
    ("mask_prompt", "yes", (True, None)),
    ("mask_prompt", "maybe", (None, "mask_prompt: expected true or false (got 'maybe')")),
    ("fine_tune_type", "qlora", (None, "fine_tune_type: must be one of lora, dora, full (got 'qlora')")),
    ("optimizer", "AdamW", ("adamw", None)),
    ("model", "", (None, "model: must not be empty (got '')")),
    ("iters", "", (None, None)),
    ("epochs", "2.5", (2.5, None)),
    ("lr_schedule.name", "", (None, None)),
    ("lr_schedule.arguments", "1e-5, 1000", ([1e-5, 1000], None)),
    ("lr_schedule.arguments", "1e-5, many",
     (None, "lr_schedule.arguments: expected numbers separated by commas (got 'many')")),
    ("lora_parameters.keys", "self_attn.q_proj, self_attn.v_proj",
     (["self_attn.q_proj", "self_attn.v_proj"], None)),
    ("lora_parameters.dropout", "1", (None, "lora_parameters.dropout: must be in [0, 1) (got 1.0)")),
    ("clear_cache_threshold", "2GB", (2_000_000_000, None)),
    ("optimizer_config", "{ adamw = { weight_decay = 0.01 } }", ({"adamw": {"weight_decay": 0.01}}, None)),
    ("optimizer_config", "", ({}, None)),
    ("optimizer_config", "{ adamw = { weight_decy = 0.01 } }",
     (None, "unknown key 'optimizer_config.adamw.weight_decy' (did you mean "
            "'optimizer_config.adamw.weight_decay'?)")),
    ("optimizer_config", "adamw",
     (None, "optimizer_config: expected TOML such as { adamw = { weight_decay = 0.01 } } "
            "(got 'adamw')")),
    ("hf_dataset", '[{ path = "user/ds" }]', ([{"path": "user/ds"}], None)),
])
def test_validate_field_parses_what_a_user_types(name, text, result):
    assert validate_field(name, text) == result


def test_format_field_and_validate_field_round_trip():
    cfg = everything()
    for spec in FIELDS:
        value = cfg.get_field(spec.name)
        assert validate_field(spec.name, format_field(spec.name, value)) == (value, None), spec.name
        default = field_spec(spec.name).default
        assert validate_field(spec.name, format_field(spec.name, default)) == (default, None), spec.name


def test_a_form_builds_a_config_field_by_field():
    cfg = TrainConfig()
    assert cfg.with_field("lr_schedule.warmup", 0) is cfg  # an untouched field adds no schedule
    cfg = cfg.with_field("lr_schedule.name", "cosine_decay")
    assert cfg.problems() == [
        "lr_schedule.arguments: required, a list of numbers, the starting learning rate first"]
    cfg = cfg.with_field("lr_schedule.arguments", [1e-4, 500]).with_field("lora_parameters.rank", 4)
    assert cfg.problems() == []
    assert cfg.lr_schedule == LrSchedule("cosine_decay", [1e-4, 500])
    assert cfg.lora_parameters.rank == 4
    assert cfg.with_field("lr_schedule.name", None).lr_schedule is None


# ----------------------------------------------------------------------------- against mlx


def test_schedule_table_matches_installed_mlx():
    import mlx.optimizers.schedulers as schedulers

    numeric = {name for name, fn in vars(schedulers).items()
               if inspect.isfunction(fn) and fn.__module__ == schedulers.__name__
               and name != "join_schedules"}
    assert set(SCHEDULE_ARGUMENTS) == numeric
    for name, params in SCHEDULE_ARGUMENTS.items():
        signature = inspect.signature(getattr(schedulers, name)).parameters
        assert [p for p, _, _ in params] == list(signature), name
        for arg, kind, required in params:
            assert required == (signature[arg].default is inspect.Parameter.empty), (name, arg)
            assert signature[arg].annotation in (kind, {"float": float, "int": int}[kind])


def test_optimizer_options_match_installed_mlx():
    import mlx.optimizers as optim

    classes = {"adam": optim.Adam, "adamw": optim.AdamW, "muon": optim.Muon, "sgd": optim.SGD,
               "adafactor": optim.Adafactor}
    assert set(OPTIMIZER_OPTIONS) == set(classes)
    for name, cls in classes.items():
        params = inspect.signature(cls.__init__).parameters
        assert set(OPTIMIZER_OPTIONS[name]) == set(params) - {"self", "learning_rate"}, name
        for option, kind in OPTIMIZER_OPTIONS[name].items():
            default = params[option].default
            if kind == "pair":
                assert len(default) == 2
            elif default is not None:
                assert type(default) is {"float": float, "int": int, "bool": bool}[kind], option


def test_import_is_cheap_and_reads_yaml_floats_without_mlx_lm():
    code = textwrap.dedent("""\
        import sys
        import tunedeck.core.config as config
        heavy = {"yaml", "tomllib", "tomli_w", "tomlkit", "mlx", "mlx_lm", "textual", "rich", "numpy"}
        print(sorted(heavy & set(sys.modules)))
        cfg = config.TrainConfig.from_mlx_yaml_text("learning_rate: 1e-5\\nlora_parameters: {scale: 2E1}\\n")
        print(type(cfg.learning_rate).__name__, cfg.lora_parameters.scale, "mlx_lm" in sys.modules)
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "float 20.0 False"]


def test_a_hostfile_beside_the_config_is_found_from_anywhere_and_ssh_names_stay(tmp_path):
    (tmp_path / "hosts.json").write_text("[]")
    by_file = TrainConfig(model="m", data="d", hosts="hosts.json").resolve_paths(tmp_path)
    by_names = TrainConfig(model="m", data="d", hosts="mac1,mac2").resolve_paths(tmp_path)
    assert by_file.hosts == str(tmp_path / "hosts.json")
    assert by_names.hosts == "mac1,mac2"
