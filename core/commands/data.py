"""``tunedeck data check|convert|stats|generate``: datasets before training, headless.

Output contract: every problem is a ``FILE:LINE: message`` line on standard output (warnings
read ``FILE:LINE: warning: message``), followed by a summary per file; progress goes to standard
error. Exit 0 when mlx_lm.lora can use the data, 2 when it cannot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import BadInput

MAX_SHOWN = 50
# Below these sizes the work takes well under a second and a progress line is only noise.
CHECK_PROGRESS_BYTES = 16 << 20
TOKENIZE_PROGRESS_BYTES = 256 << 10

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

CONVERT_EPILOG = """\
INPUT files may be JSON Lines or JSON arrays (LLaMA-Factory .json) in any of: mlx-lm chat
(messages, optional tools), completions (prompt/completion), text, Mistral "[INST] ... [/INST]"
text, Alpaca (instruction/input/output, optional system and history), ShareGPT
(conversations with from/value) or conversations with role/content; or plain .txt files,
split by --txt-mode. A directory means the data files in it.

No text is dropped: an Alpaca row's instruction and input both go into the prompt; system and
history go into the conversation. Rows are shuffled (--seed) and split into train/valid/test
by --split percentages. A split with no rows is not written: mlx_lm.lora fails on an empty
valid.jsonl but trains without validation when it is missing. Inputs are never overwritten.

examples:
  tunedeck data convert alpaca_data.json --out data/
  tunedeck data convert chats.jsonl --out data/ --to completions --split 90,10,0 --dedup
  tunedeck data convert novel.txt --out data/ --txt-mode paragraph
  tunedeck data convert novel.txt --out data/ --txt-mode chunk --chunk-tokens 512 \\
      --overlap 64 --model demo"""

STATS_EPILOG = """\
Counts tokens per row with the model's tokenizer and chat template, exactly as mlx-lm's
datasets do, and draws a length histogram against --max-seq-length: rows in the bins above
it are truncated by mlx_lm.lora. With --mask-prompt, "trained" counts only the tokens that
carry loss (the completion / last message).

examples:
  tunedeck data stats data/ --model demo
  tunedeck data stats data/train.jsonl --model ~/models/gemma-3-1b-it-4bit --max-seq-length 512"""


GENERATE_EPILOG = """\
Two sources: --model M [--adapter A] runs a local MLX model in this process, answering
--batch-size prompts at once; --endpoint URL asks any OpenAI-compatible server (Ollama's
http://127.0.0.1:11434/v1, LM Studio, vLLM, mlx_lm.server, tunedeck serve), --concurrency
requests at once, with --model naming the model there. Output is appended one complete line at
a time and fsynced per batch: re-running the same command picks up where it stopped, skipping
what is already written (keyed by a hash of the prompt); a hard kill loses at most the answers
in flight. Failed requests are retried with backoff; a prompt that keeps failing is reported
and skipped. An endpoint that does not answer at all ends the command (exit 1).

examples:
  tunedeck data generate questions --topic "the French revolution" --count 20 \\
      --model demo --out questions.jsonl
  tunedeck data generate answers --prompts questions.jsonl --model demo --out data/
  tunedeck data generate answers --prompts prompts.txt --out answers.jsonl \\
      --endpoint http://127.0.0.1:11434/v1 --model llama3.2 --concurrency 4"""


def _source_options(p: argparse.ArgumentParser) -> None:
    from ..data.generate import DEFAULT_BATCH, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S

    p.add_argument("--model", metavar="M",
                   help="a local model directory or 'demo'; with --endpoint, the model's name "
                        "on the server")
    p.add_argument("--adapter", metavar="A", help="an adapter directory or checkpoint file for "
                                                  "the local --model")
    p.add_argument("--endpoint", metavar="URL", help="an OpenAI-compatible server's base URL")
    p.add_argument("--api-key-env", metavar="NAME",
                   help="the environment variable holding the endpoint's API key")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="requests at once to the endpoint (default 1)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, metavar="N",
                   help=f"prompts answered at once by a local model (default {DEFAULT_BATCH})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds to wait for one endpoint answer (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                   help=f"attempts per request to the endpoint (default {DEFAULT_RETRIES})")
    p.add_argument("--system", metavar="TEXT", help="a system message before every prompt")
    p.add_argument("--max-tokens", type=int, default=512, metavar="N",
                   help="tokens per answer at most (default 512)")
    p.add_argument("--seed", type=int, default=None,
                   help="sampling seed (default 0 for a local model; an endpoint gets none "
                        "unless given, because mlx_lm.server answers seeded requests one at a "
                        "time instead of batching them)")


def register(subparsers: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    data = subparsers.add_parser(
        "data", help="check, convert, measure and generate datasets",
        description="Check, convert, measure and generate datasets for mlx_lm.lora.",
        epilog="examples:\n  tunedeck data check data/\n  tunedeck data convert alpaca.json "
               "--out data/\n  tunedeck data stats data/ --model demo\n  tunedeck data "
               "generate answers --prompts questions.txt --model demo --out data/",
        formatter_class=raw)
    data.set_defaults(handler=lambda args: _usage(data))
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND")

    p = sub.add_parser("check", help="validate data files the way mlx_lm.lora will read them",
                       description="Validate data files the way mlx_lm.lora will read them.",
                       epilog=CHECK_EPILOG, formatter_class=raw)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", help="a model directory or 'demo': also count tokens")
    p.add_argument("--max-seq-length", type=int, default=None, metavar="N",
                   help="name rows longer than N tokens (default 2048, mlx-lm's default; "
                        "needs --model)")
    p.add_argument("--mask-prompt", action="store_true",
                   help="count tokens as mlx_lm.lora --mask-prompt trains them")
    _feature_options(p)
    p.add_argument("--strict", action="store_true", help="exit 2 on warnings too")
    p.add_argument("--max-problems", type=int, default=MAX_SHOWN, metavar="N",
                   help=f"show at most N problem lines (default {MAX_SHOWN}); all are counted")
    p.set_defaults(handler=_check)

    p = sub.add_parser("convert", help="convert datasets into mlx-lm train/valid/test.jsonl",
                       description="Convert datasets into mlx-lm's train/valid/test.jsonl.",
                       epilog=CONVERT_EPILOG, formatter_class=raw)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="directory for train.jsonl, valid.jsonl and test.jsonl")
    p.add_argument("--to", choices=("chat", "completions", "text"), default=None,
                   help="target format (default: chat for conversations and Alpaca, "
                        "completions for prompt/completion, text for text)")
    p.add_argument("--split", default="80,10,10", metavar="TRAIN,VALID,TEST",
                   help="percentages (default 80,10,10; 100,0,0 puts everything in train)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--no-shuffle", action="store_true", help="keep the input order")
    p.add_argument("--txt-mode", choices=("line", "paragraph", "sentence", "chunk"),
                   default="line",
                   help="how a .txt file becomes rows: one per non-blank line (default), per "
                        "paragraph (blank-line separated), per sentence, or token chunks")
    p.add_argument("--chunk-tokens", type=int, default=512, metavar="N",
                   help="tokens per chunk for --txt-mode chunk (default 512)")
    p.add_argument("--overlap", type=int, default=0, metavar="N",
                   help="tokens shared by consecutive chunks (default 0)")
    p.add_argument("--model", help="a model directory or 'demo' (for --txt-mode chunk)")
    p.add_argument("--dedup", action="store_true", help="drop exact duplicate rows")
    p.add_argument("--skip-invalid", action="store_true",
                   help="leave invalid records out instead of stopping")
    p.add_argument("--keep", choices=("chosen",), default=None,
                   help="preference data (chosen/rejected) and KTO data (true/false labels) "
                        "as supervised data: the chosen answers, the examples labelled true")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out (replaces its train/valid/test.jsonl)")
    p.set_defaults(handler=_convert)

    p = sub.add_parser("stats", help="token statistics and a length histogram",
                       description="Token statistics and a length histogram against "
                                   "max_seq_length.",
                       epilog=STATS_EPILOG, formatter_class=raw)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", required=True, help="a model directory or 'demo'")
    p.add_argument("--max-seq-length", type=int, default=None, metavar="N",
                   help="mlx_lm.lora's --max-seq-length (default 2048)")
    p.add_argument("--mask-prompt", action="store_true",
                   help="count trained tokens as mlx_lm.lora --mask-prompt does")
    p.add_argument("--bins", type=int, default=10, help="histogram bins (default 10)")
    _feature_options(p)
    p.set_defaults(handler=_stats)

    g = sub.add_parser("generate", help="make questions and answers with a model",
                       description="Make training data with a local model or an "
                                   "OpenAI-compatible server.",
                       epilog=GENERATE_EPILOG, formatter_class=raw)
    g.set_defaults(handler=lambda args: _usage(g))
    gsub = g.add_subparsers(dest="generate_command", metavar="WHAT")
    p = gsub.add_parser("questions", help="questions on a topic, deduplicated",
                        description="Ask a model for COUNT distinct questions on a topic "
                                    "(exact and near duplicates left out).",
                        epilog=GENERATE_EPILOG, formatter_class=raw)
    p.add_argument("--topic", required=True, metavar="TEXT")
    p.add_argument("--count", type=int, required=True, metavar="N")
    p.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help='a .jsonl ({"prompt": ...} per line) or .txt (one per line)')
    p.add_argument("--temp", type=float, default=0.8,
                   help="sampling temperature (default 0.8: varied questions)")
    _source_options(p)
    p.set_defaults(handler=_generate_questions)
    p = gsub.add_parser("answers", help="an answer to every prompt, as mlx-lm chat JSONL",
                        description="Answer every prompt of a file into mlx-lm chat JSONL.",
                        epilog=GENERATE_EPILOG, formatter_class=raw)
    p.add_argument("--prompts", required=True, type=Path, metavar="FILE",
                   help='.txt (one prompt a line) or .jsonl ("prompt" or "messages")')
    p.add_argument("--out", required=True, type=Path, metavar="DIR|FILE",
                   help="a directory (train/valid/test.jsonl, by --split) or one .jsonl file")
    p.add_argument("--split", default=None, metavar="TRAIN,VALID,TEST",
                   help="percentages for a directory --out (default 80,10,10)")
    p.add_argument("--temp", type=float, default=0.0, help="sampling temperature (default 0)")
    p.add_argument("--drop-flagged", action="store_true",
                   help="leave out answers the quality report flags (empty, cut at "
                        "--max-tokens, in another script, duplicates)")
    _source_options(p)
    p.set_defaults(handler=_generate_answers)


def _feature_options(p: argparse.ArgumentParser) -> None:
    from ..data.formats import DEFAULT_KEYS, FEATURES

    for name in FEATURES:
        p.add_argument(f"--{name}-feature", metavar="KEY", default=None,
                       help=f"the record key mlx-lm reads as the {name} (its {name}_feature; "
                            f"default {getattr(DEFAULT_KEYS, name)!r}, or the project's)")
    p.add_argument("--config", type=Path, metavar="TOML",
                   help="the tunedeck.toml whose feature keys to use (default: the project's)")


def _features(args) -> dict:
    """Feature keys: the project's tunedeck.toml, then the command line's."""
    from ..data.feature_keys import describe_features, find_project_config, project_features
    from ..data.formats import FEATURES

    config = args.config
    if config is not None and not config.is_file():
        raise BadInput(f"{config}: no such file")
    config = config or find_project_config(args.paths)
    features: dict[str, str] = {}
    if config is not None:
        features, problem = project_features(config)
        if problem:
            print(f"warning: {problem}; its feature keys are not used", file=sys.stderr)
        elif features:
            print(f"{config}: {describe_features(features)}", file=sys.stderr)
    for name in FEATURES:
        column = getattr(args, f"{name}_feature")
        if column:
            features[name] = column
    return features


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _progress_for(path, min_bytes: int):
    """The progress line for work on a file big enough to take a while; None otherwise."""
    from ..progress import print_progress

    return print_progress if Path(path).stat().st_size >= min_bytes else None


def _load_tokenizer(model: str):
    from ..data.tokens import load_tokenizer
    from ..progress import print_progress

    print_progress(f"loading the tokenizer of {model}", None)
    return load_tokenizer(model, progress=print_progress)


def _max_seq_length(args) -> int:
    from ..data.tokens import DEFAULT_MAX_SEQ_LENGTH

    if args.max_seq_length is not None and args.max_seq_length < 1:
        raise BadInput("--max-seq-length must be at least 1")
    return args.max_seq_length or DEFAULT_MAX_SEQ_LENGTH


# ---------------------------------------------------------------------------------------------
# check

def _check(args) -> int:
    from ..data import formats as F
    from ..data.tokens import count_tokens, needs_chat_template, token_stats
    from ..data.validate import Problem, expand_paths, validate_file

    if args.max_seq_length is not None and not args.model:
        raise BadInput("--max-seq-length counts tokens: pass --model too")
    if args.mask_prompt and not args.model:
        raise BadInput("--mask-prompt counts tokens: pass --model too")
    max_len = _max_seq_length(args)
    files, dir_problems = expand_paths(args.paths)
    features = _features(args)
    tokenizer = _load_tokenizer(args.model) if args.model else None

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
        report = validate_file(path, progress=_progress_for(path, CHECK_PROGRESS_BYTES),
                               features=features)
        stats = None
        if tokenizer is not None and report.mlx_ready and needs_chat_template(report.format) \
                and not tokenizer.has_chat_template:
            report.add(1, f"the tokenizer of {args.model} has no chat template; mlx-lm needs "
                          f"one for {report.format} data (use text data, or a model with "
                          "a template)")
        elif tokenizer is not None and report.mlx_ready:
            counts = count_tokens(path, tokenizer, args.mask_prompt and report.format != F.TEXT,
                                  progress=_progress_for(path, TOKENIZE_PROGRESS_BYTES),
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
    print(f"{verdict}: {_plural(len(files), 'file')}, {_plural(errors, 'error')}, "
          f"{_plural(warnings, 'warning')}")
    return 2 if failed else 0


def _file_summary(report) -> str:
    from ..data import formats as F
    from ..data.sources import JSON_ARRAY, TXT

    if report.container == TXT:
        kind = "plain text"
    elif report.format is None and not report.rows:
        kind = "no records"
    else:
        kind = F.describe(report.format, report.keys)
        if report.container == JSON_ARRAY:
            kind += ", JSON array"
    parts = [kind, _plural(report.rows, "row")]
    if report.valid_rows != report.rows:
        parts.append(f"{report.valid_rows:,} valid")
    if report.errors:
        parts.append(_plural(report.errors, "error"))
    if report.warnings:
        parts.append(_plural(report.warnings, "warning"))
    if not report.errors and not report.warnings:
        parts.append("ok")
    return f"{report.path}: " + ", ".join(parts)


def _token_line(stats) -> str:
    if not stats.rows:
        return "  tokens: no usable rows"
    return (f"  tokens: {stats.total:,} in {_plural(stats.rows, 'row')} (min {stats.min:,}, "
            f"median {stats.median:,}, mean {stats.mean:,.1f}, p95 {stats.p95:,}, "
            f"max {stats.max:,}); {len(stats.over):,} over max_seq_length {stats.max_seq_length:,}")


# ---------------------------------------------------------------------------------------------
# convert

def _convert(args) -> int:
    from ..data.convert import InvalidData, convert, expand_inputs, parse_split
    from ..progress import print_progress

    split = parse_split(args.split)
    inputs = expand_inputs(args.inputs)
    big = sum(p.stat().st_size for p in inputs) >= CHECK_PROGRESS_BYTES
    tokenizer = None
    if args.model:
        tokenizer = _load_tokenizer(args.model)
    elif args.txt_mode == "chunk":
        raise BadInput("--txt-mode chunk counts tokens: pass --model")
    try:
        result = convert(inputs, args.out, to=args.to, split=split, seed=args.seed,
                         shuffle=not args.no_shuffle, txt_mode=args.txt_mode,
                         chunk_tokens=args.chunk_tokens, overlap=args.overlap,
                         tokenizer=tokenizer, dedup=args.dedup, force=args.force,
                         skip_invalid=args.skip_invalid, keep=args.keep,
                         progress=print_progress if big else None)
    except InvalidData as exc:
        for problem in exc.problems[:MAX_SHOWN]:
            print(problem)
        if len(exc.problems) > MAX_SHOWN:
            print(f"... {len(exc.problems) - MAX_SHOWN:,} more problem line(s) not shown")
        raise
    written = ", ".join(f"{p} ({_plural(result.counts[p.stem], 'row')})" for p in result.files)
    print(f"wrote {written} as {result.target}")
    notes = [f"read {_plural(result.rows_read, 'row')}"]
    if args.dedup:
        notes.append(f"{_plural(result.duplicates, 'duplicate')} removed")
    if result.skipped:
        notes.append(f"{_plural(result.skipped, 'invalid row')} left out")
    if result.rejected:
        notes.append(f"{_plural(result.rejected, 'row')} labelled false left out")
    print("; ".join(notes))
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


# ---------------------------------------------------------------------------------------------
# stats

def _stats(args) -> int:
    from ..data import formats as F
    from ..data.tokens import count_tokens, token_stats
    from ..data.validate import expand_paths, validate_file

    max_len = _max_seq_length(args)
    if args.bins < 1:
        raise BadInput("--bins must be at least 1")
    files, _ = expand_paths(args.paths)
    if not files:
        raise BadInput("no data files to measure")
    features = _features(args)
    tokenizer = _load_tokenizer(args.model)
    unusable = 0
    for path, _split in files:
        report = validate_file(path, progress=_progress_for(path, CHECK_PROGRESS_BYTES),
                               features=features)
        if not report.mlx_ready:
            print(f"{path}: {F.describe(report.format)} is not an mlx-lm format; "
                  "run tunedeck data check for details")
            unusable += 1
            continue
        counts = count_tokens(path, tokenizer, args.mask_prompt and report.format != F.TEXT,
                              progress=_progress_for(path, TOKENIZE_PROGRESS_BYTES),
                              keys=report.keys)
        stats = token_stats(counts, max_len, args.bins)
        _print_stats(path, counts, stats)
        unusable += bool(counts.failures)
    return 2 if unusable else 0


def _print_stats(path, counts, stats) -> None:
    bad = counts.skipped + len(counts.failures)
    skipped = (f" ({_plural(bad, 'unusable row')} not counted: see tunedeck data check)"
               if bad else "")
    print(f"{path}: {_plural(stats.rows, 'row')}, {stats.total:,} tokens, "
          f"{stats.trained:,} trained{skipped}")
    if not stats.rows:
        return
    print(f"  min {stats.min:,} · median {stats.median:,} · mean {stats.mean:,.1f} · "
          f"p95 {stats.p95:,} · max {stats.max:,}")
    print(f"  over max_seq_length {stats.max_seq_length:,}: {_plural(len(stats.over), 'row')}"
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


# ---------------------------------------------------------------------------------------------
# generate

def _open_source(args):
    from ..data.generate import open_source
    from ..progress import print_progress

    return open_source(model=args.model, adapter=args.adapter, endpoint=args.endpoint,
                       api_key_env=args.api_key_env, concurrency=args.concurrency,
                       batch_size=args.batch_size, timeout=args.timeout, retries=args.retries,
                       progress=print_progress)


def _seed(args):
    if args.seed is None and not args.endpoint:
        return 0   # a local model's answers repeat from run to run unless asked otherwise
    return args.seed


def _generate_questions(args) -> int:
    from ..data.generate import generate_questions
    from ..errors import WorkFailed
    from ..progress import print_progress

    source = _open_source(args)
    try:
        result = generate_questions(source, args.topic, args.count, args.out, system=args.system,
                                    max_tokens=args.max_tokens, temp=args.temp,
                                    seed=_seed(args), progress=print_progress)
    finally:
        source.close()
    have = result.already + result.written
    print(f"{args.out}: {_plural(have, 'question')} ({result.written:,} new, "
          f"{result.already:,} from before; {_plural(result.duplicates, 'duplicate')} left out)")
    if have < args.count:
        raise WorkFailed(f"{args.out}: {have:,} of {args.count:,} questions after "
                         f"{result.rounds:,} rounds; the model keeps repeating itself: raise "
                         "--temp, or reword --topic")
    return 0


def _generate_answers(args) -> int:
    from ..data.convert import parse_split
    from ..data.generate import AnswerOutput, generate_answers, read_prompts
    from ..progress import print_progress

    split = parse_split(args.split) if args.split else None
    out = args.out
    if split is None and (out.is_dir() or out.suffix.lower() not in (".jsonl", ".json")):
        split = parse_split("80,10,10")
    # Bad prompts or a bad --out are said before a model takes seconds to load.
    AnswerOutput(out, split)
    read_prompts(args.prompts, args.system)
    source = _open_source(args)
    try:
        result = generate_answers(source, args.prompts, out, system=args.system,
                                  max_tokens=args.max_tokens, temp=args.temp,
                                  seed=_seed(args), split=split, drop_flagged=args.drop_flagged,
                                  progress=print_progress)
    finally:
        source.close()
    for line, why in result.failed:
        print(f"{args.prompts}:{line}: not answered: {why}")
    for problem in result.flags[:MAX_SHOWN]:
        print(problem)
    if len(result.flags) > MAX_SHOWN:
        print(f"... {len(result.flags) - MAX_SHOWN:,} more flagged answer(s)")
    counts = ", ".join(f"{p} ({_plural(_count_lines(p), 'row')})" for p in result.files)
    notes = [f"{_plural(result.written, 'answer')} written", f"{result.already:,} from before"]
    if result.dropped:
        notes.append(f"{result.dropped:,} flagged and left out")
    if result.repeated:
        notes.append(f"{_plural(result.repeated, 'repeated prompt')} answered once")
    if result.failed:
        notes.append(f"{_plural(len(result.failed), 'prompt')} failed (run again to retry)")
    notes.append(f"{_plural(len(result.flags), 'flagged answer')}")
    print(f"wrote {counts or 'nothing'}; " + "; ".join(notes))
    return 1 if result.failed else 0


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
