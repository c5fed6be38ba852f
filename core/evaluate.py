"""Did the fine-tune help? Loss and perplexity of base and adapter on one split, and their answers
to the split's prompts next to the expected completion, scored by exact match and token F1.

When the expected answers share a sign-off (the demo's "Stir the pot, matey!"), the two things a
persona fine-tune is after are scored apart: how many answers carry the sign-off, and how right
the rest of the answer is (token F1 with the sign-off stripped from both sides), so a model that
learned the sign-off but lost the facts shows it.

The base model is loaded once: it is measured, then the adapter is applied to the same weights.
Answers are generated with mlx-lm's batch generator, the base model's and the adapter's in one
batch (the LoRA layers switched off for the base model's rows), the prompts' shared opening
(the chat template's system prompt) computed once per side. The base model's answers and loss
do not change between evaluations of the same split, so they are cached in the home directory,
keyed by the model's files, the split's content and the generation settings.
"""

from __future__ import annotations

import hashlib
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
from .progress import Progress, quiet
from .rundir import RunDirectory, write_atomic
from .tensors import load_model

_WORD = re.compile(r"\w+", re.UNICODE)
# A sign-off is what at least this share of the expected answers ends with.
SIGN_OFF_SHARE = 0.8
CACHE_VERSION = 1
# At most this many answers are generated at once; the rest wait their turn (mlx-lm's batch
# generator starts one as another finishes), so a long split does not hold every KV cache at once.
ANSWER_BATCH = 64


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


def common_sign_off(expected: list[str]) -> Optional[str]:
    """The closing words most expected answers share ("Stir the pot, matey!"), or None.

    At least two words, at the end of at least SIGN_OFF_SHARE of the answers, and never the
    whole of most answers (data whose every answer is the same sentence has no sign-off).
    """
    spans = [list(_WORD.finditer(text)) for text in expected]
    spans = [s for s in spans if s]
    if len(spans) < 2:
        return None
    best: Optional[tuple[str, ...]] = None
    for k in range(1, max(len(s) for s in spans) + 1):
        counts = Counter(tuple(m.group().lower() for m in s[-k:]) for s in spans if len(s) >= k)
        suffix, count = counts.most_common(1)[0]
        if count < SIGN_OFF_SHARE * len(spans):
            break
        best = suffix
    if best is None or len(best) < 2:
        return None
    whole = sum(1 for s in spans if len(s) == len(best))
    if whole > len(spans) / 2:
        return None
    for text, s in zip(expected, spans):
        if tuple(m.group().lower() for m in s[-len(best):]) == best:
            return text[s[-len(best)].start():].strip()
    return None


def has_sign_off(answer: str, sign_off: str) -> bool:
    """The sign-off's words, in order, anywhere in the answer (a model may add words after)."""
    want, got = _words(sign_off), _words(answer)
    return any(got[i:i + len(want)] == want for i in range(len(got) - len(want) + 1))


def strip_sign_off(answer: str, sign_off: Optional[str]) -> str:
    """The answer without every occurrence of the sign-off's words (as words, case-blind)."""
    if not sign_off:
        return answer
    pattern = r"\W+".join(re.escape(w) for w in _words(sign_off))
    return re.sub(pattern + r"\W*", " ", answer, flags=re.IGNORECASE).strip()


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
    base_sign_off: bool = False
    adapter_sign_off: bool = False
    base_content_f1: float = 0.0
    adapter_content_f1: float = 0.0


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
    sign_off: Optional[str] = None
    base_from_cache: bool = False
    phases: dict = field(default_factory=dict)  # seconds per step, to see where the time goes

    @property
    def base_ppl(self) -> float:
        return math.exp(self.base_loss)

    @property
    def adapter_ppl(self) -> float:
        return math.exp(self.adapter_loss)

    def mean(self, attr: str) -> Optional[float]:
        values = [float(getattr(s, attr)) for s in self.samples]
        return sum(values) / len(values) if values else None

    def sign_off_rate(self, who: str) -> Optional[float]:
        return self.mean(f"{who}_sign_off") if self.sign_off else None

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(base_ppl=self.base_ppl, adapter_ppl=self.adapter_ppl,
                    base_mean_f1=self.mean("base_f1"), adapter_mean_f1=self.mean("adapter_f1"),
                    base_exact_match=self.mean("base_exact"),
                    adapter_exact_match=self.mean("adapter_exact"),
                    base_sign_off_rate=self.sign_off_rate("base"),
                    adapter_sign_off_rate=self.sign_off_rate("adapter"),
                    base_content_f1=self.mean("base_content_f1"),
                    adapter_content_f1=self.mean("adapter_content_f1"))
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


def _model_fingerprint(model: Path) -> str:
    """The model's identity for the cache: its path and its files' sizes and times."""
    parts = [str(model.resolve())]
    for file in sorted(model.glob("*")):
        if file.is_file():
            stat = file.stat()
            parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _base_cache_file(model: Path, split_file: Path, settings: dict) -> Path:
    from .home import tunedeck_home

    key = hashlib.sha256("\n".join([
        f"v{CACHE_VERSION}", _model_fingerprint(model),
        hashlib.sha256(split_file.read_bytes()).hexdigest(),
        json.dumps(settings, sort_keys=True)]).encode()).hexdigest()
    return tunedeck_home() / "eval-cache" / f"{key[:32]}.json"


class _AdapterRows:
    """Which rows of a generation batch get the adapter (1.0) and which are the base model's (0.0).

    It rides in each row's prompt cache, after the layers' own entries, because mlx-lm's batch
    generator merges, filters, extends and extracts every cache entry together with its rows:
    the switch stays with its row as finished answers leave the batch.
    """

    def __init__(self, on):
        self.on = on  # mx.array, one float per row

    @classmethod
    def merge(cls, caches: list["_AdapterRows"]) -> "_AdapterRows":
        import mlx.core as mx

        return cls(mx.concatenate([c.on for c in caches]))

    def filter(self, keep) -> None:
        import mlx.core as mx

        self.on = self.on[mx.array(keep)]

    def extend(self, other: "_AdapterRows") -> None:
        import mlx.core as mx

        self.on = mx.concatenate([self.on, other.on])

    def extract(self, idx: int) -> "_AdapterRows":
        return _AdapterRows(self.on[idx:idx + 1])

    def prepare(self, **kwargs) -> None:
        pass  # padding is the KV caches' business

    def finalize(self) -> None:
        pass

    @property
    def state(self):
        return self.on

    @property
    def nbytes(self) -> int:
        return self.on.nbytes

    def size(self) -> int:
        return 0

    def empty(self) -> bool:
        return False


class _SwitchedModel:
    """The model with its LoRA layers on or off per row, as the cache's _AdapterRows say.

    A LoRA layer adds ``scale * (x @ a) @ b`` to the base layer's output; a scale of 0 for a row
    leaves that row exactly the base model's. On a CPU a decoding step reads every weight once
    whatever the number of rows, so doubling the rows costs far less than a second pass.
    """

    def __init__(self, model, switched: list):
        self.model = model
        self._switched = [(layer, layer.scale) for layer in switched]

    def __call__(self, inputs, cache=None, **kwargs):
        *layer_caches, rows = cache
        on = rows.on.reshape(-1, 1, 1)  # (rows, tokens, features) in the layers
        for layer, scale in self._switched:
            layer.scale = on * scale
        try:
            return self.model(inputs, cache=layer_caches, **kwargs)
        finally:
            for layer, scale in self._switched:
                layer.scale = scale


def _switchable(model, adapter: AdapterRef) -> bool:
    """Whether the adapter's layers can be switched off per row: LoRA (DoRA rescales the whole
    weight, a full fine-tune replaces it) on a model without mixture-of-experts layers (those
    regroup the rows by expert)."""
    from mlx_lm.models.switch_layers import QuantizedSwitchLinear, SwitchLinear

    if adapter.config().get("fine_tune_type", "lora") != "lora":
        return False
    return not any(isinstance(m, (SwitchLinear, QuantizedSwitchLinear))
                   for _, m in model.named_modules())


def _lora_layers(model) -> list:
    from mlx_lm.tuner.lora import LoRAEmbedding, LoRALinear

    return [m for _, m in model.named_modules() if type(m) in (LoRALinear, LoRAEmbedding)]


def _generate_answers(model, tokenizer, prompts: list[list[int]], sides: list[float],
                      switched: list, max_tokens: int, say: Progress,
                      cancelled: Callable[[], bool]) -> list[list[str]]:
    """Greedy answers to ``prompts`` for each side (0.0 the base model, 1.0 the adapter), all in
    one batch; one list of answers per side."""
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator
    from mlx_lm.models.cache import make_prompt_cache

    if not prompts or not sides:
        return [[] for _ in sides]
    gated = _SwitchedModel(model, switched)
    # The opening every prompt shares (the chat template's system prompt) is computed once per
    # side; at least one token of each prompt is left for the generator.
    shared = 0
    while (shared < min(len(p) for p in prompts) - 1
           and all(p[shared] == prompts[0][shared] for p in prompts)):
        shared += 1
    openings = []
    for on in sides:
        cache = make_prompt_cache(model) + [_AdapterRows(mx.array([on], dtype=mx.float32))]
        if shared:
            gated(mx.array(prompts[0][:shared])[None], cache=cache)
            mx.eval([c.state for c in cache])
        openings.append(cache)  # the generator copies a prompt cache; it never writes into one
    rows = len(prompts) * len(sides)
    # BatchGenerator only calls the model, but its annotation asks for an nn.Module.
    generator = BatchGenerator(gated,  # type: ignore[arg-type]
                               stop_tokens=[[t] for t in tokenizer.eos_token_ids],
                               max_tokens=max_tokens, completion_batch_size=min(rows, ANSWER_BATCH),
                               prefill_batch_size=min(rows, ANSWER_BATCH))
    try:
        uids = generator.insert([p[shared:] for _ in sides for p in prompts],
                                caches=[cache for cache in openings for _ in prompts])
        tokens: dict[int, list[int]] = {uid: [] for uid in uids}
        done = 0
        while responses := generator.next_generated():
            finished = done
            for r in responses:
                if r.finish_reason != "stop":
                    tokens[r.uid].append(r.token)
                if r.finish_reason is not None:
                    done += 1
            if cancelled():
                raise KeyboardInterrupt
            if done > finished:
                say(f"{done} of {rows} answers", done / rows)
    finally:
        generator.close()
    texts = [tokenizer.decode(tokens[uid]).strip() for uid in uids]
    return [texts[i * len(prompts):(i + 1) * len(prompts)] for i in range(len(sides))]


def evaluate_run(run: RunDirectory, adapter: AdapterRef, split: str = "test",
                 generate: Optional[int] = None, max_tokens: int = 64,
                 progress: Optional[Progress] = None,
                 cancelled: Callable[[], bool] = lambda: False) -> EvalReport:
    """Base vs adapter on ``split``: loss, and answers to its first ``generate`` prompts (all of
    them when None)."""
    import os
    import types

    import numpy as np

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mlx_lm.tuner.datasets import CacheDataset, create_dataset
    from mlx_lm.tuner.trainer import evaluate

    from .models import resolve_model
    from .training_setup import read_mlx_args

    say = progress or quiet
    started = time.monotonic()
    args = read_mlx_args(run, None)
    path = Path(args["data"]) / f"{split}.jsonl"
    if not path.exists():
        raise BadInput(f"{path}: no {split} split to evaluate on")
    rows = _read_rows(path)
    if len(rows) < args["batch_size"]:
        raise BadInput(f"{path}: {len(rows)} rows, fewer than the batch size {args['batch_size']}")
    model_dir = resolve_model(str(args["model"]), progress=say)

    samples: list[Sample] = []
    for row in rows:
        pair = prompt_and_expected(row, args)
        if pair is not None and (generate is None or len(samples) < generate):
            samples.append(Sample(prompt=pair[0], expected=pair[1]))
    sign_off = common_sign_off([s.expected for s in samples])
    settings = {"seed": args["seed"], "test_batches": args["test_batches"],
                "batch_size": args["batch_size"], "max_seq_length": args["max_seq_length"],
                "mask_prompt": bool(args.get("mask_prompt")), "answers": len(samples),
                "max_tokens": max_tokens}
    cache_file = _base_cache_file(model_dir, path, settings)
    try:
        cached = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cached = None
    if cached is not None and len(cached.get("answers", [])) != len(samples):
        cached = None

    phases: dict = {}
    mark = [time.monotonic()]

    def check(finished: Optional[str] = None) -> None:
        if finished:
            now = time.monotonic()
            phases[finished] = round(now - mark[0], 2)
            mark[0] = now
        if cancelled():
            raise KeyboardInterrupt

    say("loading the base model", None)
    model, tokenizer = load_model(str(model_dir))
    dataset = CacheDataset(create_dataset(rows, tokenizer, types.SimpleNamespace(**args)))
    prompts = [tokenizer.apply_chat_template(s.prompt, add_generation_prompt=True)
               for s in samples]

    def loss() -> float:
        np.random.seed(args["seed"])  # base and adapter see the same batches
        return evaluate(model=model, dataset=dataset, batch_size=args["batch_size"],
                        num_batches=args["test_batches"], max_seq_length=args["max_seq_length"])

    def answers(sides: list[float], switched: list, first: float, last: float) -> list[list[str]]:
        def step(text: str, fraction: Optional[float]) -> None:
            say(text, first + (last - first) * (fraction or 0.0))

        return _generate_answers(model, tokenizer, prompts, sides, switched, max_tokens, step,
                                 cancelled)

    def remember_base() -> None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_file, json.dumps({"loss": base_loss, "answers": base_answers,
                                                 "model": str(model_dir), "split": str(path)}))
        except OSError:
            pass  # a read-only home: the next evaluation measures the base again

    model.eval()
    check("load")
    one_batch = False
    if cached is not None:
        say(f"base: loss and {len(samples)} answers from the cache", 0.1)
        base_loss, base_answers = cached["loss"], cached["answers"]
    else:
        say(f"base: loss on {split}", 0.05)
        base_loss = loss()
        check("base loss")
        one_batch = _switchable(model, adapter)
        if not one_batch:
            say(f"base: {len(samples)} answers", 0.2)
            [base_answers] = answers([0.0], [], 0.2, 0.4)
            remember_base()
            check("base answers")
    apply_adapter(model, adapter)
    say(f"adapter: loss on {split}", 0.4)
    adapter_loss = loss()
    check("adapter loss")
    if one_batch:
        say(f"base and adapter: {len(samples)} answers each", 0.6)
        base_answers, adapter_answers = answers([0.0, 1.0], _lora_layers(model), 0.6, 1.0)
        remember_base()
        check("answers")
    else:
        say(f"adapter: {len(samples)} answers", 0.6)
        [adapter_answers] = answers([1.0], [], 0.6, 1.0)
        check("adapter answers")
    for s, base, tuned in zip(samples, base_answers, adapter_answers):
        s.base, s.adapter = base, tuned
        s.base_f1, s.adapter_f1 = token_f1(base, s.expected), token_f1(tuned, s.expected)
        s.base_exact, s.adapter_exact = exact_match(base, s.expected), exact_match(tuned, s.expected)
        if sign_off:
            s.base_sign_off, s.adapter_sign_off = has_sign_off(base, sign_off), has_sign_off(tuned, sign_off)
        content = strip_sign_off(s.expected, sign_off)
        s.base_content_f1 = token_f1(strip_sign_off(base, sign_off), content)
        s.adapter_content_f1 = token_f1(strip_sign_off(tuned, sign_off), content)
    say("done", 1.0)
    return EvalReport(run=str(run.path), checkpoint=adapter.weights.name, split=split, rows=len(rows),
                      base_loss=base_loss, adapter_loss=adapter_loss, samples=samples,
                      seconds=time.monotonic() - started, sign_off=sign_off,
                      base_from_cache=cached is not None, phases=phases)


def save_report(run: RunDirectory, report: EvalReport) -> Path:
    stem = report.checkpoint.replace("_adapters.safetensors", "").replace(".safetensors", "")
    path = run.path / f"eval-{stem}-{report.split}.json"
    write_atomic(path, json.dumps(report.to_json(), indent=1) + "\n")
    return path
