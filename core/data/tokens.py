"""Rows as the model sees them: tokens, the rendered chat template, and which tokens carry loss.

Everything goes through mlx-lm's own dataset classes (``create_dataset`` picks the class from
the record, exactly as training does, and ``process`` makes the same ``apply_chat_template``
calls), so what is shown is what mlx-lm will feed, not a re-derivation of it.
mlx-lm and transformers are imported inside the functions: this module is imported by
headless commands whose ``--help`` must stay fast.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional, Sequence, Tuple

from ..errors import BadInput
from ..progress import Progress
from . import formats as F
from .sources import SourceProblem, iter_records, sniff_container

DEFAULT_MAX_SEQ_LENGTH = 2048  # mlx_lm.lora's default


def resolve_model_dir(spec, progress: Optional[Progress] = None) -> Path:
    """The model directory for ``--model``: ``demo`` or a local directory."""
    try:
        from ..models import resolve_model
    except ImportError:
        # tunedeck.core.models (which also knows "demo") is being written alongside this
        # module; until it is committed, a local directory is all --model can name.
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise BadInput(f"{spec}: no such model directory")
        return path
    return Path(resolve_model(str(spec), progress=progress))


def load_tokenizer(model, progress: Optional[Progress] = None):
    """mlx-lm's tokenizer for a model spec, loaded the way ``mlx_lm.lora`` loads it."""
    path = resolve_model_dir(model, progress)
    if not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
        raise BadInput(f"{path}: no tokenizer (tokenizer.json / tokenizer_config.json) in the "
                       "model directory")
    import json

    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    eos = None
    config = path / "config.json"
    if config.is_file():
        eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token_id")
    return mlx_load_tokenizer(path, {"trust_remote_code": False}, eos_token_ids=eos)


@dataclass(frozen=True)
class RenderedRow:
    """One row as mlx-lm trains on it."""

    text: str                 # the chat template's output (or the raw text for text rows)
    token_ids: List[int]
    token_strings: List[str]  # one per token; joined they give back the decoded text
    loss_mask: List[bool]     # True where the token is a target of the loss
    offset: int = 0           # mlx-lm's prompt offset: 0 unless mask_prompt
    truncated: int = 0        # tokens dropped by max_seq_length

    @property
    def loss_tokens(self) -> int:
        return sum(self.loss_mask)


def needs_chat_template(fmt: Optional[str]) -> bool:
    return fmt in (F.CHAT, F.COMPLETIONS)


def _dataset_for(row: dict, tokenizer, mask_prompt: bool, keys: F.FeatureKeys):
    from mlx_lm.tuner.datasets import create_dataset

    # The feature keys go to mlx-lm as its own options, so its datasets read the user's columns.
    config = SimpleNamespace(mask_prompt=mask_prompt, prompt_feature=keys.prompt,
                             completion_feature=keys.completion, chat_feature=keys.chat,
                             text_feature=keys.text)
    try:
        return create_dataset([row], tokenizer, config)
    except ValueError as exc:
        # mlx-lm's own refusal: an unknown record, or mask_prompt on text data.
        raise BadInput(str(exc).splitlines()[0]) from None


def encode_row(row: dict, tokenizer, mask_prompt: bool = False,
               keys: F.FeatureKeys = F.DEFAULT_KEYS) -> Tuple[List[int], int]:
    """(token ids, prompt offset) exactly as mlx-lm's dataset ``process`` returns them.

    Raises BadInput when mlx-lm would fail on the row, which it only does mid-training, when
    the row's batch is drawn (a chat template that rejects a role, a message without content).
    """
    dataset = _dataset_for(row, tokenizer, mask_prompt, keys)
    try:
        tokens, offset = dataset.process(row)
    except Exception as exc:  # templates fail with jinja, Type, Key and Value errors alike
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"mlx-lm cannot tokenize this row: {detail}") from None
    return list(tokens), int(offset)


def loss_mask(n_tokens: int, offset: int, max_seq_length: Optional[int] = None) -> List[bool]:
    """Which tokens are loss targets, as mlx-lm's default_loss masks them.

    The model predicts token i from the tokens before it, so token 0 is never a target; with
    mask_prompt, targets start at the offset; tokens past max_seq_length are cut off.
    (mlx-lm 0.32's mask, ``steps <= lengths``, also counts the padding position just after an
    untruncated row; that position is not a token of the row, so it is not shown here.)
    """
    kept = n_tokens if max_seq_length is None else min(n_tokens, max_seq_length)
    first = max(1, offset)
    return [first <= i < kept for i in range(n_tokens)]


def _token_strings(ids: Sequence[int], tokenizer) -> List[str]:
    """Per-token text via mlx-lm's streaming detokenizer, which joins multi-byte characters
    split across tokens (a per-token decode would show replacement characters)."""
    detok = getattr(tokenizer, "detokenizer", None)
    if detok is None:
        return [tokenizer.decode([t]) for t in ids]
    out = []
    for t in ids:
        detok.add_token(t)
        out.append(detok.last_segment)
    detok.finalize()
    tail = detok.last_segment
    if tail and out:
        out[-1] += tail
    return out


def render_row(row: dict, tokenizer, mask_prompt: bool = False,
               max_seq_length: Optional[int] = None,
               keys: F.FeatureKeys = F.DEFAULT_KEYS) -> RenderedRow:
    """A record as mlx-lm will feed it: rendered text, tokens and the loss mask.

    Raises BadInput for a record mlx-lm cannot use (and for mask_prompt on text data, which
    mlx-lm refuses).
    """
    ids, offset = encode_row(row, tokenizer, mask_prompt, keys)
    fmt = F.record_format(row, keys)
    row = keys.standard(row, fmt)
    if fmt == F.TEXT:
        text = row["text"]
    else:
        if fmt == F.COMPLETIONS:
            messages = [{"role": "user", "content": row["prompt"]},
                        {"role": "assistant", "content": row["completion"]}]
        else:
            messages = row["messages"]
        # The same call the dataset made, untokenized.
        text = tokenizer.apply_chat_template(messages, tools=row.get("tools"), tokenize=False)
    truncated = max(0, len(ids) - max_seq_length) if max_seq_length else 0
    return RenderedRow(text=text, token_ids=ids, token_strings=_token_strings(ids, tokenizer),
                       loss_mask=loss_mask(len(ids), offset, max_seq_length),
                       offset=int(offset), truncated=truncated)


# ---------------------------------------------------------------------------------------------
# Token statistics over a file

@dataclass
class TokenCounts:
    """Token lengths of the usable rows of one file."""

    path: Path
    lines: List[int] = field(default_factory=list)     # 1-based line of each counted row
    lengths: List[int] = field(default_factory=list)   # tokens per row
    trained: List[int] = field(default_factory=list)   # loss tokens per row (before truncation)
    skipped: int = 0                                   # rows not counted (invalid)
    failures: List[Tuple[int, str]] = field(default_factory=list)  # (line, why) untokenizable
    complete: bool = True


def count_tokens(path, tokenizer, mask_prompt: bool = False,
                 progress: Optional[Progress] = None,
                 cancel: Optional[threading.Event] = None,
                 keys: F.FeatureKeys = F.DEFAULT_KEYS) -> TokenCounts:
    """Token length of every row mlx-lm can use in a JSONL file. Rows it cannot use (bad
    JSON, another format than the first record's, errors) are only counted in ``skipped``:
    validation says why. Rows the tokenizer or chat template fails on are in ``failures``."""
    path = Path(path)
    counts = TokenCounts(path)
    ref = None
    label = f"tokenizing {path.name}"
    for line, item in iter_records(path, sniff_container(path), progress, label):
        if cancel is not None and cancel.is_set():
            counts.complete = False
            break
        if isinstance(item, SourceProblem):
            counts.skipped += 1
            continue
        fmt = F.record_format(item, keys)
        ref = ref or fmt
        issues = F.check_record(item, fmt, keys) if fmt is not None else None
        if fmt is None or fmt != ref or fmt not in F.MLX_FORMATS or (
                issues and any(is_error for is_error, _ in issues)):
            counts.skipped += 1
            continue
        # mlx-lm refuses mask_prompt for text data; text rows train on every token anyway.
        try:
            ids, offset = encode_row(item, tokenizer, mask_prompt and fmt != F.TEXT, keys)
        except BadInput as exc:
            counts.failures.append((line, str(exc)))
            continue
        counts.lines.append(line)
        counts.lengths.append(len(ids))
        counts.trained.append(len(ids) - max(1, offset))
    return counts


@dataclass(frozen=True)
class TokenStats:
    rows: int
    total: int
    trained: int
    min: int
    mean: float
    median: int
    p95: int
    max: int
    max_seq_length: int
    over: List[Tuple[int, int]]          # (line, tokens) of rows longer than max_seq_length
    histogram: List[Tuple[int, int, int]]  # (low, high, rows) with low <= tokens < high


def token_stats(counts: TokenCounts, max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
                bins: int = 10) -> TokenStats:
    lengths = counts.lengths
    if not lengths:
        return TokenStats(0, 0, 0, 0, 0.0, 0, 0, 0, max_seq_length, [], [])
    ordered = sorted(lengths)
    n = len(ordered)
    over = [(line, length) for line, length in zip(counts.lines, lengths)
            if length > max_seq_length]
    return TokenStats(
        rows=n, total=sum(ordered), trained=sum(counts.trained), min=ordered[0],
        mean=sum(ordered) / n, median=ordered[n // 2], p95=ordered[min(n - 1, (n * 95) // 100)],
        max=ordered[-1], max_seq_length=max_seq_length, over=over,
        histogram=histogram(ordered, max_seq_length, bins))


def histogram(lengths: Sequence[int], max_seq_length: int,
              bins: int = 10) -> List[Tuple[int, int, int]]:
    """Rows per token-length bin as (low, high, rows) with low < tokens <= high.

    One bin edge sits exactly at max_seq_length, so the bins above it are the rows mlx-lm
    truncates; when rows run past it, the bins are shared out in proportion to both sides.
    """
    if not lengths:
        return []
    top = max(lengths)
    if top <= max_seq_length:
        below, above = bins, 0
    else:
        below = min(bins - 1, max(1, round(bins * max_seq_length / top)))
        above = bins - below
    edges = [0] + [math.ceil(max_seq_length * i / below) for i in range(1, below + 1)]
    edges += [max_seq_length + math.ceil((top - max_seq_length) * i / above)
              for i in range(1, above + 1)]
    edges = sorted(set(edges))
    rows = [0] * (len(edges) - 1)
    for x in lengths:
        rows[min(max(bisect.bisect_left(edges, x) - 1, 0), len(rows) - 1)] += 1
    return [(edges[i], edges[i + 1], rows[i]) for i in range(len(rows))]
