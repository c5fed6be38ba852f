"""Fusing a checkpoint into its base model with mlx-lm's own code.

``mlx_lm.fuse`` only reads an adapter directory's final ``adapters.safetensors``; here any
numbered checkpoint is applied the way ``tunedeck chat`` applies it (core.adapters), and then the
same steps as ``mlx_lm.fuse`` run: every adapter layer's own ``fuse()``, ``dequantize_model`` when
asked, and ``mlx_lm.utils.save`` for the directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..adapters import AdapterRef, apply_adapter
from ..tensors import load_model_and_config

if TYPE_CHECKING:
    import mlx.nn as nn
    from mlx_lm.tokenizer_utils import TokenizerWrapper


@dataclass
class FusedModel:
    model: nn.Module
    tokenizer: TokenizerWrapper
    config: dict          # config.json as the fused model must be saved with
    base_dir: Path


def base_is_quantized(model_dir: Path) -> bool:
    import json

    config = json.loads((Path(model_dir) / "config.json").read_text())
    return bool(config.get("quantization") or config.get("quantization_config"))


def fuse_checkpoint(base_dir: Path, adapter: Optional[AdapterRef], dequantize: bool) -> FusedModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mlx.utils import tree_unflatten

    model, tokenizer, config = load_model_and_config(str(base_dir))
    if adapter is not None:
        apply_adapter(model, adapter)
    fused = [(name, module.fuse(dequantize=dequantize))
             for name, module in model.named_modules() if hasattr(module, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    return FusedModel(model, tokenizer, config, Path(base_dir))


def dequantize_fused(fused: FusedModel) -> None:
    """The rest of the model (embeddings, layers without an adapter) in full precision too."""
    from mlx_lm.utils import dequantize_model

    fused.model = dequantize_model(fused.model)
    fused.config.pop("quantization", None)
    fused.config.pop("quantization_config", None)


def save_fused(fused: FusedModel, out: Path) -> None:
    from mlx_lm.utils import save

    save(out, fused.base_dir, fused.model, fused.tokenizer, dict(fused.config), donate_model=False)
