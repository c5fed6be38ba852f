"""``tunedeck data check``: validate data files the way mlx_lm.lora will read them."""

from __future__ import annotations

import argparse

from ...errors import BadInput
from ...text import plural
from .shared import (CHECK_PROGRESS_BYTES, MAX_SHOWN, TOKENIZE_PROGRESS_BYTES, add_command,
                     feature_options, features_of, load_tokenizer, max_seq_length, progress_for)

CHECK_EPILOG = """\
PATH is a data file, or a directory holding train.jsonl / valid.jsonl / test.jsonl as
mlx_lm.lora --data reads it. Every problem is printed as FILE:LINE: message on standard output,
and checking goes on past each one. With --model, token lengths are counted with the model's
tokenizer and chat template (exactly what mlx-lm feeds), and rows longer than
--max-seq-length are named. Columns are read under mlx-lm's feature keys: those the project's
tunedeck.toml sets (prompt_feature, completion_feature, chat_feature, text_feature; the one in
the current directory, else the nearest above PATH, or --config), overridden by the
--prompt-feature ... options.

exit status: 0 the data is usable by mlx_lm.lora, 2 it is not (or --strict and warnings).

examples:
  tunedeck data check data/
  tunedeck data check data/train.jsonl --model demo --max-seq-length 1024
  tunedeck data check data/ --model ~/models/Qwen2.5-0.5B-Instruct-4bit --mask-prompt
  tunedeck data check qa.jsonl --prompt-feature question --completion-feature answer"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "check", "validate data files the way mlx_lm.lora will read them",
                    "Validate data files the way mlx_lm.lora will read them.", CHECK_EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", help="a model directory or 'demo': also count tokens")
    p.add_argument("--max-seq-length", type=int, default=None, metavar="N",
                   help="name rows longer than N tokens (default 2048, mlx-lm's default; "
                        "needs --model)")
    p.add_argument("--mask-prompt", action="store_true",
                   help="count tokens as mlx_lm.lora --mask-prompt trains them")
    feature_options(p)
    p.add_argument("--strict", action="store_true", help="exit 2 on warnings too")
    p.add_argument("--max-problems", type=int, default=MAX_SHOWN, metavar="N",
                   help=f"show at most N problem lines (default {MAX_SHOWN}); all are counted")
    p.set_defaults(handler=_check)


def _check(args) -> int:
    from ...data import formats as F
    from ...data.tokens import count_tokens, needs_chat_template, token_stats
    from ...data.file_report import Problem
    from ...data.validate import expand_paths, validate_file

    if args.max_seq_length is not None and not args.model:
        raise BadInput("--max-seq-length counts tokens: pass --model too")
    if args.mask_prompt and not args.model:
        raise BadInput("--mask-prompt counts tokens: pass --model too")
    max_len = max_seq_length(args)
    files, dir_problems = expand_paths(args.paths)
    features = features_of(args)
    tokenizer = load_tokenizer(args.model) if args.model else None

    shown = 0
    errors = sum(p.error for p in dir_problems)
    warnings = len(dir_problems) - errors

    def show(problem: Problem) -> None:
        nonlocal shown
        if shown < args.max_problems:
            print(problem)
        shown += 1

    for p in dir_problems:
        show(p)
    for path, _split in files:
        report = validate_file(path, progress=progress_for(path, CHECK_PROGRESS_BYTES),
                               features=features)
        stats = None
        if tokenizer is not None and report.mlx_ready and needs_chat_template(report.format) \
                and not tokenizer.has_chat_template:
            report.add(1, f"the tokenizer of {args.model} has no chat template; mlx-lm needs "
                          f"one for {report.format} data (use text data, or a model with "
                          "a template)")
        elif tokenizer is not None and report.mlx_ready:
            counts = count_tokens(path, tokenizer, args.mask_prompt and report.format != F.TEXT,
                                  progress=progress_for(path, TOKENIZE_PROGRESS_BYTES),
                                  keys=report.keys)
            stats = token_stats(counts, max_len)
            for line, message in counts.failures:
                report.add(line, message + " (mlx_lm.lora would stop when it reaches it)")
            report.valid_rows -= len(counts.failures)
            for line, length, trained in zip(counts.lines, counts.lengths, counts.trained):
                if length > max_len:
                    offset = length - trained
                    cut = ("; with --mask-prompt nothing of it is trained"
                           if args.mask_prompt and offset >= max_len else "")
                    report.add(line, f"{length:,} tokens, over max_seq_length {max_len:,}: "
                                     f"mlx-lm truncates it{cut}", error=False)
            report.problems.sort(key=lambda p: p.line)
        for problem in report.problems:
            show(problem)
        errors += report.errors
        warnings += report.warnings
        print(_file_summary(report))
        if stats is not None:
            print(_token_line(stats))
    if shown > args.max_problems:
        print(f"... {shown - args.max_problems:,} more problem line(s) not shown "
              "(--max-problems N shows more)")
    failed = errors > 0 or (args.strict and warnings > 0)
    verdict = "invalid" if failed else "ok"
    print(f"{verdict}: {plural(len(files), 'file')}, {plural(errors, 'error')}, "
          f"{plural(warnings, 'warning')}")
    return 2 if failed else 0


def _file_summary(report) -> str:
    from ...data import formats as F
    from ...data.sources import JSON_ARRAY, TXT

    if report.container == TXT:
        kind = "plain text"
    elif report.format is None and not report.rows:
        kind = "no records"
    else:
        kind = F.describe(report.format, report.keys)
        if report.container == JSON_ARRAY:
            kind += ", JSON array"
    parts = [kind, plural(report.rows, "row")]
    if report.valid_rows != report.rows:
        parts.append(f"{report.valid_rows:,} valid")
    if report.errors:
        parts.append(plural(report.errors, "error"))
    if report.warnings:
        parts.append(plural(report.warnings, "warning"))
    if not report.errors and not report.warnings:
        parts.append("ok")
    return f"{report.path}: " + ", ".join(parts)


def _token_line(stats) -> str:
    if not stats.rows:
        return "  tokens: no usable rows"
    return (f"  tokens: {stats.total:,} in {plural(stats.rows, 'row')} (min {stats.min:,}, "
            f"median {stats.median:,}, mean {stats.mean:,.1f}, p95 {stats.p95:,}, "
            f"max {stats.max:,}); {len(stats.over):,} over max_seq_length {stats.max_seq_length:,}")
