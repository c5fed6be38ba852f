"""Setting a run up to train as ``mlx_lm.lora -c mlx_lm.yaml`` would: its arguments, its
datasets, its model with LoRA layers, its optimizer, and for a resume the checkpoint's weights
and optimizer state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .resume_state import ResumeState, adapter_file, load_state, restore_optimizer
from .resumable_loop import reseed
from .rundir import RunDirectory


def read_mlx_args(run: RunDirectory, total_iters: Optional[int]) -> dict:
    """The arguments mlx-lm's own ``mlx_lm.lora -c mlx_lm.yaml`` would train with."""
    from .config import TrainConfig

    args = TrainConfig.from_mlx_yaml(run.mlx_yaml).to_mlx_args()
    args["adapter_path"] = str(run.adapters)
    if total_iters is not None:
        args["iters"] = total_iters
    return args


def load_splits(ns, tokenizer):
    """mlx-lm's datasets, except that a local file may start with a byte-order mark.

    Editors on Windows add one, `tunedeck data check` accepts it, and mlx-lm's own loader fails
    on it with a JSONDecodeError; everything after reading the rows is mlx-lm's create_dataset.
    """
    import json

    from mlx_lm.cli_ui import rprint
    from mlx_lm.tuner.datasets import create_dataset, load_dataset

    data = Path(ns.data)
    if getattr(ns, "hf_dataset", None) or not data.is_dir():
        return load_dataset(ns, tokenizer)

    def split(name):
        path = data / f"{name}.jsonl"
        if not path.exists():
            return []
        with open(path, encoding="utf-8-sig") as f:
            rows = [json.loads(line) for line in f]
        return create_dataset(rows, tokenizer, ns) if rows else []

    train, valid, test = split("train"), split("valid"), split("test")
    # The same refusals and warning as mlx_lm.tuner.datasets.load_dataset.
    if len(train) == 0:
        raise ValueError("Training set not found or empty. Must provide training set for fine-tuning.")
    if len(valid) == 0:
        rprint("Warning: Validation set not found or empty. Training will proceed without validation.")
    if ns.test and len(test) == 0:
        raise ValueError("Test set not found or empty. Must provide test set for evaluation.")
    return train, valid, test


def read_early_stopping(run: RunDirectory) -> tuple[Optional[int], float]:
    """Early stopping is tunedeck's own, so it lives in run.toml, not in mlx_lm.yaml."""
    from .config import TrainConfig

    try:
        config = TrainConfig.from_toml(run.run_toml)
    except Exception:  # a run started from a YAML config has no tunedeck-only settings
        return None, 0.0
    return config.early_stopping_patience, config.early_stopping_min_delta



@dataclass
class Loaded:
    """What training starts from: mlx-lm's model and optimizer, the datasets, and the resume
    state of the checkpoint it continues (None for a new run)."""

    model: Any
    optimizer: Any
    train_set: Any
    valid_set: Any
    test_set: Any
    resume: Optional[ResumeState]


def load_for_training(args: dict, run: RunDirectory, resume_from: Optional[int],
                      records: bool) -> Loaded:
    """The model, datasets and optimizer for ``args``; ``records``: this process writes the run's
    adapter_config.json (rank 0)."""
    import types

    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.cli_ui import make_console, print_lora_run_header, rprint
    from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers, print_trainable_parameters
    from mlx_lm.utils import load, save_config

    ns = types.SimpleNamespace(**args)
    # The same seeding, loading and layer set-up, in the same order, as mlx_lm.lora.
    np.random.seed(args["seed"])
    rprint("Loading pretrained model")
    loaded = load(args["model"], tokenizer_config={"trust_remote_code": args["trust_remote_code"]},
                  trust_remote_code=args["trust_remote_code"])
    model, tokenizer = loaded[0], loaded[1]
    rprint("Loading datasets")
    train_set, valid_set, test_set = load_splits(ns, tokenizer)
    rprint("Training")
    mx.random.seed(args["seed"])
    model.freeze()
    if args["num_layers"] > len(model.layers):
        raise ValueError(f"Requested to train {args['num_layers']} layers but the model only "
                         f"has {len(model.layers)} layers.")
    if args["fine_tune_type"] == "full":
        for layer in model.layers[-max(args["num_layers"], 0):]:
            layer.unfreeze()
        ns.lora_parameters = None
    else:
        linear_to_lora_layers(model, args["num_layers"], args["lora_parameters"],
                              use_dora=args["fine_tune_type"] == "dora")

    resume: Optional[ResumeState] = None
    if resume_from is not None:
        resume = load_state(run.adapters, resume_from)
        if resume is None:
            raise RuntimeError(f"checkpoint {resume_from} has no complete resume state")
        rprint(f"Loading fine-tuned weights from {adapter_file(run.adapters, resume_from)}")
        model.load_weights(str(adapter_file(run.adapters, resume_from)), strict=False)
    elif args.get("resume_adapter_file"):
        rprint(f"Loading fine-tuned weights from {args['resume_adapter_file']}")
        model.load_weights(args["resume_adapter_file"], strict=False)

    print_lora_run_header(make_console(), ns)
    print_trainable_parameters(model)
    if records:
        run.adapters.mkdir(parents=True, exist_ok=True)
        save_config(vars(ns), run.adapters / "adapter_config.json")

    lr = build_schedule(args["lr_schedule"]) if args.get("lr_schedule") else args["learning_rate"]
    name = args["optimizer"].lower()
    classes = {"adam": optim.Adam, "adamw": optim.AdamW, "muon": optim.Muon, "sgd": optim.SGD,
               "adafactor": optim.Adafactor}
    optimizer = classes[name](learning_rate=lr, **args.get("optimizer_config", {}).get(name, {}))
    if resume is not None:
        # A resume may bring a new learning rate (tunedeck resume --learning-rate).
        restore_optimizer(optimizer, run.adapters, resume.iteration,
                          run.read_status().get("resume_learning_rate"))
        reseed(args["seed"], resume.iteration)
    return Loaded(model, optimizer, train_set, valid_set, test_set, resume)
