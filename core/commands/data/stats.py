"""``tunedeck data stats``: token statistics and a length histogram against max_seq_length."""

from __future__ import annotations

import argparse
import sys

from ...errors import BadInput
from ...text import plural
from .shared import (CHECK_PROGRESS_BYTES, TOKENIZE_PROGRESS_BYTES, add_command, feature_options,
                     features_of, load_tokenizer, max_seq_length, progress_for)

STATS_EPILOG = """\
Counts tokens per row with the model's tokenizer and chat template, exactly as mlx-lm's
datasets do, and draws a length histogram against --max-seq-length: rows in the bins above
it are truncated by mlx_lm.lora. With --mask-prompt, "trained" counts only the tokens that
carry loss (the completion / last message).

examples:
  tunedeck data stats data/ --model demo
  tunedeck data stats data/train.jsonl --model ~/models/gemma-3-1b-it-4bit --max-seq-length 512"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "stats", "token statistics and a length histogram",
                    "Token statistics and a length histogram against max_seq_length.",
                    STATS_EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", required=True, help="a model directory or 'demo'")
    p.add_argument("--max-seq-length", type=int, default=None, metavar="N",
                   help="mlx_lm.lora's --max-seq-length (default 2048)")
    p.add_argument("--mask-prompt", action="store_true",
                   help="count trained tokens as mlx_lm.lora --mask-prompt does")
    p.add_argument("--bins", type=int, default=10, help="histogram bins (default 10)")
    feature_options(p)
    p.set_defaults(handler=_stats)


def _stats(args) -> int:
    from ...data import formats as F
    from ...data.tokens import count_tokens, token_stats
    from ...data.validate import expand_paths, validate_file

    max_len = max_seq_length(args)
    if args.bins < 1:
        raise BadInput("--bins must be at least 1")
    files, _ = expand_paths(args.paths)
    if not files:
        raise BadInput("no data files to measure")
    features = features_of(args)
    tokenizer = load_tokenizer(args.model)
    unusable = 0
    for path, _split in files:
        report = validate_file(path, progress=progress_for(path, CHECK_PROGRESS_BYTES),
                               features=features)
        if not report.mlx_ready:
            print(f"{path}: {F.describe(report.format)} is not an mlx-lm format; "
                  "run tunedeck data check for details")
            unusable += 1
            continue
        counts = count_tokens(path, tokenizer, args.mask_prompt and report.format != F.TEXT,
                              progress=progress_for(path, TOKENIZE_PROGRESS_BYTES),
                              keys=report.keys)
        stats = token_stats(counts, max_len, args.bins)
        _print_stats(path, counts, stats)
        unusable += bool(counts.failures)
    return 2 if unusable else 0


def _print_stats(path, counts, stats) -> None:
    bad = counts.skipped + len(counts.failures)
    skipped = (f" ({plural(bad, 'unusable row')} not counted: see tunedeck data check)"
               if bad else "")
    print(f"{path}: {plural(stats.rows, 'row')}, {stats.total:,} tokens, "
          f"{stats.trained:,} trained{skipped}")
    if not stats.rows:
        return
    print(f"  min {stats.min:,} · median {stats.median:,} · mean {stats.mean:,.1f} · "
          f"p95 {stats.p95:,} · max {stats.max:,}")
    print(f"  over max_seq_length {stats.max_seq_length:,}: {plural(len(stats.over), 'row')}"
          + (" (truncated by mlx-lm), lines " + ", ".join(str(line) for line, _ in stats.over[:10])
             + (" ..." if len(stats.over) > 10 else "") if stats.over else ""))
    width = 30
    peak = max(rows for _, _, rows in stats.histogram) or 1
    label_w = max(len(f"{lo + 1:,}–{hi:,}") for lo, hi, _ in stats.histogram)
    marked = False
    for lo, hi, rows in stats.histogram:
        if lo >= stats.max_seq_length and not marked:
            print(f"  {'─' * label_w} max_seq_length {stats.max_seq_length:,}: "
                  "rows below are truncated")
            marked = True
        bar = "█" * (round(width * rows / peak) if rows else 0)
        print(f"  {f'{lo + 1:,}–{hi:,}':>{label_w}} {rows:>8,} {bar}")
    sys.stdout.flush()
