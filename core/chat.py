"""Talking to a model: a base model plus an optional adapter, streaming answers token by token.

The base model is loaded once; switching LoRA adapters unwraps and re-applies the adapter layers
instead of reloading the base (a full fine-tune or DoRA adapter changes the base, so those reload).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from .adapters import AdapterRef, apply_adapter, removable, resolve_adapter


@dataclass
class GenerationSettings:
    max_tokens: int = 256
    temp: float = 0.7
    top_p: float = 1.0
    seed: Optional[int] = None


@dataclass
class Chunk:
    """One piece of a streamed answer."""

    text: str
    tokens: int
    tokens_per_sec: float
    finished: bool = False
    finish_reason: Optional[str] = None


@dataclass
class Conversation:
    system: Optional[str] = None
    turns: list[dict] = field(default_factory=list)

    def messages(self, next_user: Optional[str] = None) -> list[dict]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.extend(self.turns)
        if next_user is not None:
            msgs.append({"role": "user", "content": next_user})
        return msgs

    def add(self, user: str, assistant: str) -> None:
        self.turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]

    def clear(self) -> None:
        self.turns.clear()


class ChatModel:
    """A loaded base model with at most one adapter applied."""

    def __init__(self, model_dir: Path, adapter: Optional[str | Path | AdapterRef] = None):
        # Users work offline: never let a typo turn into a hub download attempt.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from mlx_lm import load

        self.model_dir = Path(model_dir)
        self.model, self.tokenizer = load(str(self.model_dir))
        self.adapter: Optional[AdapterRef] = None
        if adapter is not None:
            self.set_adapter(adapter)

    def set_adapter(self, adapter: Optional[str | Path | AdapterRef]) -> bool:
        """Apply ``adapter`` (or none). Returns True when the base had to be reloaded."""
        ref = adapter if isinstance(adapter, AdapterRef) or adapter is None else resolve_adapter(adapter)
        reloaded = False
        if self.adapter is not None:
            if self._base_untouched_by_adapter():
                from mlx_lm.tuner.utils import remove_lora_layers

                remove_lora_layers(self.model)
            else:
                from mlx_lm import load

                self.model, self.tokenizer = load(str(self.model_dir))
                reloaded = True
        self.adapter = None
        if ref is not None:
            apply_adapter(self.model, ref)
            self.adapter = ref
        return reloaded

    def _base_untouched_by_adapter(self) -> bool:
        return self.adapter.config().get("fine_tune_type", "lora") != "full" and removable(self.model)

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return list(tok.apply_chat_template(messages, add_generation_prompt=True))
        # A base model without a template: plain concatenation is the honest fallback.
        return list(tok.encode("\n".join(m["content"] for m in messages)))

    def stream(self, messages: list[dict], settings: GenerationSettings,
               cancelled=lambda: False) -> Iterator[Chunk]:
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        if settings.seed is not None:
            mx.random.seed(settings.seed)
        sampler = make_sampler(temp=settings.temp, top_p=settings.top_p if settings.top_p < 1.0 else 0.0)
        start = time.perf_counter()
        last = None
        for response in stream_generate(self.model, self.tokenizer, self.prompt_tokens(messages),
                                        max_tokens=settings.max_tokens, sampler=sampler):
            last = response
            yield Chunk(response.text, response.generation_tokens, response.generation_tps,
                        finished=response.finish_reason is not None,
                        finish_reason=response.finish_reason)
            if cancelled():
                yield Chunk("", response.generation_tokens, response.generation_tps,
                            finished=True, finish_reason="cancelled")
                return
        if last is None:  # max_tokens == 0
            yield Chunk("", 0, 0.0, finished=True, finish_reason="length")
        elif last.finish_reason is None:
            elapsed = time.perf_counter() - start
            yield Chunk("", last.generation_tokens, last.generation_tokens / elapsed if elapsed else 0.0,
                        finished=True, finish_reason="length")
