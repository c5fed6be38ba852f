"""Adapters as users name them: an adapter directory or one numbered checkpoint file in it.

mlx-lm's own ``load_adapters`` only reads ``adapters.safetensors``; a checkpoint such as
``0000200_adapters.safetensors`` is applied here the same way: the LoRA layers described by the
directory's ``adapter_config.json``, then that file's tensors, after checking every shape so a
mismatched adapter is a clear error instead of a crash deep inside a matmul.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import BadInput
from .tensors import flat_parameters, load_tensors

FINAL_WEIGHTS = "adapters.safetensors"
CONFIG_FILE = "adapter_config.json"


@dataclass(frozen=True)
class AdapterRef:
    """Where an adapter's weights and config are. ``weights`` may be a numbered checkpoint."""

    directory: Path
    weights: Path

    @property
    def label(self) -> str:
        return f"{self.directory.name}/{self.weights.name}"

    def config(self) -> dict:
        try:
            return json.loads((self.directory / CONFIG_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"{self.directory / CONFIG_FILE}: cannot read adapter config ({exc})") from None


def resolve_adapter(spec: str | Path) -> AdapterRef:
    """Accept an adapter directory (its final weights) or a checkpoint file inside one."""
    path = Path(spec)
    if path.is_dir():
        # A run directory keeps its adapters one level down.
        if not (path / CONFIG_FILE).exists() and (path / "adapters" / CONFIG_FILE).exists():
            path = path / "adapters"
        weights = path / FINAL_WEIGHTS
        if not (path / CONFIG_FILE).exists():
            raise BadInput(f"{path}: not an adapter directory (no {CONFIG_FILE})")
        if not weights.exists():
            raise BadInput(f"{path}: no {FINAL_WEIGHTS} yet (has the run saved a checkpoint?)")
        return AdapterRef(path, weights)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise BadInput(f"{path}: an adapter is a directory or a .safetensors checkpoint file")
        if not (path.parent / CONFIG_FILE).exists():
            raise BadInput(f"{path}: no {CONFIG_FILE} beside this checkpoint")
        return AdapterRef(path.parent, path)
    raise BadInput(f"{path}: adapter not found")


def apply_adapter(model, ref: AdapterRef) -> None:
    """Turn ``model``'s layers into the adapter's LoRA/DoRA layers and load its weights."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    config = ref.config()
    fine_tune_type = config.get("fine_tune_type", "lora")
    if fine_tune_type != "full":
        try:
            linear_to_lora_layers(model, config["num_layers"], config["lora_parameters"],
                                  use_dora=fine_tune_type == "dora")
        except (KeyError, ValueError) as exc:
            raise BadInput(f"{ref.directory / CONFIG_FILE}: adapter does not fit this model ({exc})") from None
    try:
        weights = load_tensors(ref.weights)
    except Exception as exc:  # a torn or foreign file
        raise BadInput(f"{ref.weights}: cannot read adapter weights ({exc})") from None
    params = dict(flat_parameters(model.parameters()))
    for name, tensor in weights.items():
        expected = params.get(name)
        if expected is None:
            raise BadInput(f"{ref.weights}: tensor {name} has no place in this model "
                           "(trained for another model?)")
        if tuple(tensor.shape) != tuple(expected.shape):
            raise BadInput(f"{ref.weights}: tensor {name} has shape {tuple(tensor.shape)} but the "
                           f"model expects {tuple(expected.shape)} (trained for another model or rank?)")
    model.load_weights(list(weights.items()), strict=False)
    model.eval()


def removable(model) -> bool:
    """True when every adapter layer in ``model`` can be undone without reloading the base."""
    from mlx_lm.tuner.dora import DoRAEmbedding, DoRALinear
    from mlx_lm.tuner.lora import LoRAEmbedding, LoRASwitchLinear

    # mlx-lm's remove_lora_layers only unwraps LoRALinear.
    others = (DoRALinear, DoRAEmbedding, LoRAEmbedding, LoRASwitchLinear)
    return not any(isinstance(m, others) for _, m in model.named_modules())


def checkpoint_iteration(path: Path) -> Optional[int]:
    """``0000200_adapters.safetensors`` → 200; the final ``adapters.safetensors`` → None."""
    head, sep, _ = path.name.partition("_adapters.safetensors")
    return int(head) if sep and head.isdigit() else None
