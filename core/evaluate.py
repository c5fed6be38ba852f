"""Did the fine-tune help? Loss and perplexity of base and adapter on one split, and their answers
to the split's first prompts next to the expected completion, scored by exact match and token F1.

The base model is loaded once: it is measured, then the adapter is applied to the same weights.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .adapters import AdapterRef, apply_adapter
from .errors import BadInput
from .progress import Progress
from .rundir import RunDirectory, write_atomic

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def exact_match(answer: str, expected: str) -> bool:
    return _words(answer) == _words(expected)


def token_f1(answer: str, expected: str) -> float:
    """Overlap of lower-cased words, as question-answering benchmarks score free text."""
    got, want = _words(answer), _words(expected)
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


@dataclass
class Sample:
    prompt: list[dict]          # chat messages up to the answer
    expected: str
    base: str = ""
    adapter: str = ""
    base_f1: float = 0.0
    adapter_f1: float = 0.0
    base_exact: bool = False
    adapter_exact: bool = False


@dataclass
class EvalReport:
    run: str
    checkpoint: str
    split: str
    rows: int
    base_loss: float
    adapter_loss: float
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def base_ppl(self) -> float:
        return math.exp(self.base_loss)

    @property
    def adapter_ppl(self) -> float:
        return math.exp(self.adapter_loss)

    def mean(self, attr: str) -> Optional[float]:
        values = [float(getattr(s, attr)) for s in self.samples]
        return sum(values) / len(values) if values else None

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(base_ppl=self.base_ppl, adapter_ppl=self.adapter_ppl,
                    base_mean_f1=self.mean("base_f1"), adapter_mean_f1=self.mean("adapter_f1"),
                    base_exact_match=self.mean("base_exact"),
                    adapter_exact_match=self.mean("adapter_exact"))
        return data


def prompt_and_expected(row: dict, args: dict) -> Optional[tuple[list[dict], str]]:
    """Split a dataset row into what the model is asked and what it should answer."""
    chat_key = args.get("chat_feature") or "messages"
    prompt_key = args.get("prompt_feature") or "prompt"
    completion_key = args.get("completion_feature") or "completion"
    if prompt_key in row and completion_key in row:
        return [{"role": "user", "content": row[prompt_key]}], row[completion_key]
    messages = row.get(chat_key)
    if isinstance(messages, list) and messages and messages[-1].get("role") == "assistant":
        return messages[:-1], messages[-1].get("content", "")
    return None  # text rows have no prompt to answer


def _read_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig") as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate_run(run: RunDirectory, adapter: AdapterRef, split: str = "test", generate: int = 5,
                 max_tokens: int = 64, progress: Optional[Progress] = None,
                 cancelled: Callable[[], bool] = lambda: False) -> EvalReport:
    import os
    import types

    import numpy as np

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler
    from mlx_lm.tuner.datasets import CacheDataset, create_dataset
    from mlx_lm.tuner.trainer import evaluate

    from .runner import read_mlx_args

    say = progress or (lambda message, fraction=None: None)
    started = time.monotonic()
    args = read_mlx_args(run, None)
    path = Path(args["data"]) / f"{split}.jsonl"
    if not path.exists():
        raise BadInput(f"{path}: no {split} split to evaluate on")
    rows = _read_rows(path)
    if len(rows) < args["batch_size"]:
        raise BadInput(f"{path}: {len(rows)} rows, fewer than the batch size {args['batch_size']}")

    say("loading the base model", None)
    model, tokenizer = load(args["model"])
    dataset = CacheDataset(create_dataset(rows, tokenizer, types.SimpleNamespace(**args)))
    samples = []
    for row in rows:
        pair = prompt_and_expected(row, args)
        if pair is not None and len(samples) < generate:
            samples.append(Sample(prompt=pair[0], expected=pair[1]))
    steps = 2 + 2 * len(samples)
    done = 0

    def loss() -> float:
        np.random.seed(args["seed"])  # base and adapter see the same batches
        return evaluate(model=model, dataset=dataset, batch_size=args["batch_size"],
                        num_batches=args["test_batches"], max_seq_length=args["max_seq_length"])

    def answer(messages: list[dict]) -> str:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        sampler = make_sampler(temp=0.0)
        text = []
        for response in stream_generate(model, tokenizer, ids, max_tokens=max_tokens, sampler=sampler):
            text.append(response.text)
            if cancelled():
                break
        return "".join(text).strip()

    def step(message: str) -> None:
        nonlocal done
        if cancelled():
            raise KeyboardInterrupt
        say(message, done / steps)
        done += 1

    model.eval()
    step(f"base: loss on {split}")
    base_loss = loss()
    for i, s in enumerate(samples):
        step(f"base: answer {i + 1}/{len(samples)}")
        s.base = answer(s.prompt)
    apply_adapter(model, adapter)
    step(f"adapter: loss on {split}")
    adapter_loss = loss()
    for i, s in enumerate(samples):
        step(f"adapter: answer {i + 1}/{len(samples)}")
        s.adapter = answer(s.prompt)
    for s in samples:
        s.base_f1, s.adapter_f1 = token_f1(s.base, s.expected), token_f1(s.adapter, s.expected)
        s.base_exact, s.adapter_exact = exact_match(s.base, s.expected), exact_match(s.adapter, s.expected)
    say("done", 1.0)
    return EvalReport(run=str(run.path), checkpoint=adapter.weights.name, split=split, rows=len(rows),
                      base_loss=base_loss, adapter_loss=adapter_loss, samples=samples,
                      seconds=time.monotonic() - started)


def save_report(run: RunDirectory, report: EvalReport) -> Path:
    stem = report.checkpoint.replace("_adapters.safetensors", "").replace(".safetensors", "")
    path = run.path / f"eval-{stem}-{report.split}.json"
    write_atomic(path, json.dumps(report.to_json(), indent=1) + "\n")
    return path
