"""Proof that an export is the model the user chatted with: greedy answers token by token.

Both sides answer through the same code as ``tunedeck chat --temp 0``: the chat template with
the generation prompt, then mlx-lm's ``stream_generate`` with a greedy sampler.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..evaluate import prompt_and_expected

# Enough to show a divergence, short enough that a 135M model on a CPU verifies in seconds.
ANSWER_TOKENS = 32


@dataclass
class Answer:
    prompt: list[dict]
    tokens: list[int]
    text: str


@dataclass
class Divergence:
    prompt: int                  # index of the first prompt whose answers differ
    token: int                   # index of the first differing token in that answer
    expected_text: str           # base + adapter
    got_text: str                # the export
    max_abs_logit_diff: float    # on that prompt, one forward pass


@dataclass
class AnswerCheck:
    """(a): the export against base + adapter, or (c): llama.cpp against MLX."""

    equal: bool
    prompts: int
    divergence: Optional[Divergence] = None
    note: Optional[str] = None
    answers: list[str] = field(default_factory=list)
    summary: str = ""            # one line, as `tunedeck export` shows it after "equal"

    def to_json(self) -> dict:
        return asdict(self)


def verification_prompts(data_dir: Optional[str], args: dict, count: int) -> list[list[dict]]:
    """The first ``count`` prompts of the test split, else the valid split (else one question)."""
    for split in ("test", "valid"):
        if not data_dir:
            break
        path = Path(data_dir) / f"{split}.jsonl"
        if not path.exists():
            continue
        prompts = []
        with open(path, encoding="utf-8-sig") as f:
            for line in f:
                if not line.strip():
                    continue
                pair = prompt_and_expected(json.loads(line), args)
                if pair is not None:
                    prompts.append(pair[0])
                if len(prompts) >= count:
                    break
        if prompts:
            return prompts
    return [[{"role": "user", "content": "What is the capital of France?"}]]


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    return list(tokenizer.encode("\n".join(m["content"] for m in messages)))


def greedy_answer(model, tokenizer, messages: list[dict], max_tokens: int = ANSWER_TOKENS) -> Answer:
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    tokens, text = [], []
    for response in stream_generate(model, tokenizer, prompt_ids(tokenizer, messages),
                                    max_tokens=max_tokens, sampler=make_sampler(temp=0.0)):
        tokens.append(int(response.token))
        text.append(response.text)
    return Answer(messages, tokens, "".join(text))


def max_logit_difference(first, second, ids: list[int]) -> float:
    import mlx.core as mx

    batch = mx.array([ids])
    return float(mx.abs(first(batch).astype(mx.float32) - second(batch).astype(mx.float32)).max())


def first_difference(a: list[int], b: list[int]) -> Optional[int]:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_answers(expected: list[Answer], got: list[Answer], expected_model, got_model,
                    tokenizer, requantized: bool) -> AnswerCheck:
    """(a). ``requantized``: the export re-quantized a quantized base after fusing."""
    for i, (want, have) in enumerate(zip(expected, got)):
        at = first_difference(want.tokens, have.tokens)
        if at is None:
            continue
        ids = prompt_ids(tokenizer, want.prompt) + want.tokens
        note = ("the base is quantized and the fused weights were quantized again, which can change "
                "answers legitimately; export with --dequantize for an exact match"
                if requantized else None)
        return AnswerCheck(False, len(expected), Divergence(
            i, at, want.text, have.text, max_logit_difference(expected_model, got_model, ids)),
            note=note, answers=[a.text for a in got],
            summary=f"answers differ at prompt {i + 1}, token {at + 1}")
    return AnswerCheck(True, len(expected), answers=[a.text for a in got],
                       summary=f"{len(expected)} greedy answers token for token like base + adapter")
