"""mlx and mlx-lm calls whose declared return types are unions of every mode, typed for the one
mode tunedeck uses: a safetensors file's tensors, a model's named parameters, a loaded model.

mlx is imported when one is called, never at import: core modules that only mention a model
stay fast to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tokenizer_utils import TokenizerWrapper


def load_tensors(path: Union[str, Path]) -> dict[str, mx.array]:
    """The tensors of a ``.safetensors`` file, by name."""
    import mlx.core as mx

    tensors = mx.load(str(path))
    if not isinstance(tensors, dict):  # a .npy file holds a single array
        raise ValueError(f"{path}: not a file of named tensors")
    return tensors


def load_gguf(path: Union[str, Path]) -> tuple[dict[str, mx.array], dict[str, Any]]:
    """The tensors of a GGUF file, by name, and its metadata."""
    import mlx.core as mx

    loaded = mx.load(str(path), return_metadata=True)
    if not isinstance(loaded, tuple):
        raise ValueError(f"{path}: not a GGUF file")
    return loaded


def flat_parameters(tree: Any) -> list[tuple[str, Any]]:
    """A tree of parameters (``model.parameters()``, an optimizer's state) as dotted names and
    leaves, in tree order."""
    from mlx.utils import tree_flatten

    flat = tree_flatten(tree)
    assert isinstance(flat, list)  # a list unless a dict is passed as the destination
    return flat


def load_model(path: str, **options: Any) -> tuple[nn.Module, TokenizerWrapper]:
    """``mlx_lm.load`` without ``return_config``: the model and its tokenizer."""
    from mlx_lm import load

    loaded = load(path, **options)
    return loaded[0], loaded[1]


def load_model_and_config(path: str, **options: Any
                          ) -> tuple[nn.Module, TokenizerWrapper, dict[str, Any]]:
    """``mlx_lm.load`` with ``return_config``: the model, its tokenizer and its config.json."""
    from mlx_lm import load

    loaded = load(path, return_config=True, **options)
    assert len(loaded) == 3
    return loaded[0], loaded[1], loaded[2]
