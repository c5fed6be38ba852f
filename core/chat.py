"""Talking to a model: a base model plus an optional adapter, streaming answers token by token.

The base model is loaded once; switching LoRA adapters unwraps and re-applies the adapter layers
instead of reloading the base (a full fine-tune or DoRA adapter changes the base, so those reload).

Two sides (base vs adapter, or two checkpoints) can answer one prompt together. When both are LoRA
adapters of one layout (or one is the base), one model answers for both: the two generators take
turns, and before each step the model gets that side's adapter tensors (references, not copies;
the base is the adapter with ``lora_b`` zeroed). mlx-lm builds a step's graph inside ``next()``,
so swapping right before each ``next()`` keeps the two streams apart. Other adapters get a second
model instance.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator, Iterator, Optional, Sequence

from .adapters import AdapterRef, apply_adapter, removable, resolve_adapter
from .progress import Progress
from .tensors import flat_parameters, load_model, load_tensors

# Weights are made resident in slices of about this size, so a load reports progress and can be
# cancelled between slices.
LOAD_SLICE_BYTES = 64 * 1024 * 1024


class LoadCancelled(Exception):
    """The caller gave up on a model load; nothing of it is kept."""


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


def save_transcript(directory: Path, transcript: dict) -> Path:
    """Write ``transcript`` as ``chat-<local time>.json`` in ``directory`` (made if missing),
    atomically, never over an earlier one; returns its path."""
    from .rundir import write_atomic

    directory.mkdir(parents=True, exist_ok=True)
    stem = f"chat-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = directory / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = directory / f"{stem}-{n}.json"
    write_atomic(path, json.dumps(transcript, indent=1, ensure_ascii=False) + "\n")
    return path


def _quiet(message: str, fraction: Optional[float] = None) -> None:
    pass


def lora_layout(ref: AdapterRef) -> Optional[tuple]:
    """What LoRA layers ``ref`` puts into a model; None for full and DoRA adapters, whose
    weights cannot be swapped in and out of one model."""
    config = ref.config()
    if config.get("fine_tune_type", "lora") != "lora":
        return None
    params = config.get("lora_parameters") or {}
    return (config.get("num_layers"), params.get("rank"), params.get("scale"),
            tuple(sorted(params.get("keys") or ())))


def shares_one_model(first: Optional[AdapterRef], second: Optional[AdapterRef]) -> bool:
    """True when one loaded model can answer for both sides by swapping adapter tensors."""
    layouts = [lora_layout(ref) for ref in (first, second) if ref is not None]
    return None not in layouts and len(set(layouts)) <= 1


class ChatModel:
    """A loaded base model with at most one adapter applied."""

    def __init__(self, model_dir: Path, adapter: Optional[str | Path | AdapterRef] = None,
                 progress: Optional[Progress] = None, cancelled: Callable[[], bool] = lambda: False):
        self.model_dir = Path(model_dir)
        self.adapter: Optional[AdapterRef] = None
        self._twin: Optional[ChatModel] = None  # the second instance a comparison may need
        self._load_base(progress or _quiet, cancelled)
        if adapter is not None:
            self.set_adapter(adapter, progress, cancelled)

    def _load_base(self, say: Progress, cancelled: Callable[[], bool]) -> None:
        import mlx.core as mx

        # Users work offline: never let a typo turn into a hub download attempt.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        say("importing mlx-lm", None)
        import mlx_lm  # noqa: F401 - its import takes seconds: under its own message

        if cancelled():
            raise LoadCancelled
        say(f"reading {self.model_dir.name}", None)
        # Lazily, so that the weights can be read below in slices, with progress.
        model, tokenizer = load_model(str(self.model_dir), lazy=True)
        params = [array for _, array in flat_parameters(model.parameters())]
        total = sum(array.nbytes for array in params) or 1
        done, pending, pending_bytes = 0, [], 0
        for array in params:
            pending.append(array)
            pending_bytes += array.nbytes
            if pending_bytes >= LOAD_SLICE_BYTES or array is params[-1]:
                if cancelled():
                    raise LoadCancelled
                mx.eval(pending)
                done += pending_bytes
                pending, pending_bytes = [], 0
                say(f"loading weights ({done / 1e6:,.0f} of {total / 1e6:,.0f} MB)", done / total)
        self.model, self.tokenizer = model, tokenizer

    def set_adapter(self, adapter: Optional[str | Path | AdapterRef], progress: Optional[Progress] = None,
                    cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Apply ``adapter`` (or none). Returns True when the base had to be reloaded."""
        ref = adapter if isinstance(adapter, AdapterRef) or adapter is None else resolve_adapter(adapter)
        if ref == self.adapter:
            return False
        reloaded = False
        if self.adapter is not None:
            if self._base_untouched_by_adapter():
                from mlx_lm.tuner.utils import remove_lora_layers

                remove_lora_layers(self.model)
            else:
                self.adapter = None
                self._load_base(progress or _quiet, cancelled)
                reloaded = True
        self.adapter = None
        if ref is not None:
            import mlx.core as mx

            if progress:
                progress(f"applying {ref.label}", None)
            apply_adapter(self.model, ref)
            # A lazy MLX array can only be evaluated by the thread that made it (its stream is
            # that thread's): the new layers are computed here, where they were made, so that
            # another thread can generate with this model.
            mx.eval(self.model.parameters())
            self.adapter = ref
        return reloaded

    def _base_untouched_by_adapter(self) -> bool:
        return self.adapter is None or (
            self.adapter.config().get("fine_tune_type", "lora") != "full" and removable(self.model))

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        return prompt_tokens(self.tokenizer, messages)

    def _responses(self, messages: list[dict], settings: GenerationSettings):
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        sampler = make_sampler(temp=settings.temp, top_p=settings.top_p if settings.top_p < 1.0 else 0.0)
        return stream_generate(self.model, self.tokenizer, self.prompt_tokens(messages),
                               max_tokens=settings.max_tokens, sampler=sampler)

    def stream(self, messages: list[dict], settings: GenerationSettings,
               cancelled=lambda: False) -> Iterator[Chunk]:
        if settings.max_tokens < 1:
            yield Chunk("", 0, 0.0, finished=True, finish_reason="length")
            return
        _seed(settings)
        yield from _chunks(self._responses(messages, settings), cancelled)

    # -- two sides at once ----------------------------------------------------------------------
    def compare(self, sides: Sequence[Optional[AdapterRef]], conversations: Sequence[list[dict]],
                settings: GenerationSettings, cancelled: Callable[[], bool] = lambda: False,
                progress: Optional[Progress] = None) -> Iterator[tuple[int, Chunk]]:
        """Answer ``conversations[i]`` with ``sides[i]`` (an adapter, or None for the base), both
        streaming together: yields ``(side, chunk)`` pairs, the two sides interleaved.
        Afterwards this model holds the first side's adapter."""
        first, second = sides
        if settings.max_tokens < 1:
            for side in (0, 1):
                yield side, Chunk("", 0, 0.0, finished=True, finish_reason="length")
            return
        _seed(settings)
        if shares_one_model(first, second):
            yield from self._compare_in_one_model(first, second, conversations, settings, cancelled)
            return
        self.set_adapter(first, progress, cancelled)
        if self._twin is None:
            if progress:
                progress("loading a second instance of the model for the comparison", None)
            self._twin = ChatModel(self.model_dir, progress=progress, cancelled=cancelled)
        self._twin.set_adapter(second, progress, cancelled)
        yield from _interleave([self._responses(conversations[0], settings),
                                self._twin._responses(conversations[1], settings)],
                               [None, None], cancelled)

    def _compare_in_one_model(self, first, second, conversations, settings, cancelled):
        import mlx.core as mx

        # The model carries the LoRA layers (both sides have the same layout, or one is the base).
        self.set_adapter(first if first is not None else second)
        held = {name: array for name, array in flat_parameters(self.model.parameters())
                if name.endswith((".lora_a", ".lora_b"))}

        def tensors_of(ref: Optional[AdapterRef]) -> Optional[dict]:
            if not held:
                return None  # base against base: nothing to swap
            if ref is None:
                return {name: mx.zeros_like(array) for name, array in held.items()
                        if name.endswith(".lora_b")}
            return load_tensors(ref.weights)

        swaps = [_Swap(self.model, tensors_of(first)), _Swap(self.model, tensors_of(second))]
        try:
            yield from _interleave([self._responses(c, settings) for c in conversations], swaps,
                                   cancelled)
        finally:
            _Swap(self.model, held)()
        self.set_adapter(first)


class _Swap:
    """Puts one side's adapter tensors into the model (by reference, nothing is copied).

    Setting the layers' attributes directly costs ~0.2 ms a swap, where ``load_weights`` rebuilds
    the whole parameter tree (~6 ms for a 135M model with LoRA on every projection).
    """

    def __init__(self, model, tensors: Optional[dict]):
        modules = dict(model.named_modules())
        self.targets = []
        for name, array in (tensors or {}).items():
            path, _, attr = name.rpartition(".")
            self.targets.append((modules[path], attr, array))

    def __call__(self) -> None:
        for module, attr, array in self.targets:
            module[attr] = array


def _seed(settings: GenerationSettings) -> None:
    if settings.seed is not None:
        import mlx.core as mx

        mx.random.seed(settings.seed)


def prompt_tokens(tokenizer, messages: list[dict]) -> list[int]:
    """The tokens of a conversation ready for the model's answer, as the Chat pane builds them."""
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    # A base model without a template: plain concatenation is the honest fallback.
    return list(tokenizer.encode("\n".join(m["content"] for m in messages)))


def _chunks(responses, cancelled: Callable[[], bool]) -> Generator[Chunk, None, None]:
    """mlx-lm's responses as chunks, ending with a finished one (also when cancelled)."""
    start = time.perf_counter()
    last = None
    try:
        for response in responses:
            last = response
            yield Chunk(response.text, response.generation_tokens, response.generation_tps,
                        finished=response.finish_reason is not None,
                        finish_reason=response.finish_reason)
            if response.finish_reason is not None:
                return
            if cancelled():
                yield Chunk("", response.generation_tokens, response.generation_tps,
                            finished=True, finish_reason="cancelled")
                return
    finally:
        responses.close()
    tokens = last.generation_tokens if last else 0
    elapsed = time.perf_counter() - start
    yield Chunk("", tokens, tokens / elapsed if elapsed and tokens else 0.0, finished=True,
                finish_reason="length")


def _interleave(streams: list, swaps: list, cancelled: Callable[[], bool]) -> Iterator[tuple[int, Chunk]]:
    """Take turns between the sides' streams; before each step of a side, its swap (if any)
    puts that side's tensors into the shared model."""
    chunks = [_chunks(s, cancelled) for s in streams]
    going = list(range(len(chunks)))
    try:
        while going:
            for side in list(going):
                if swaps[side] is not None:
                    swaps[side]()
                chunk = next(chunks[side])
                yield side, chunk
                if chunk.finished:
                    going.remove(side)
    finally:
        for c in chunks:
            c.close()
