"""``tunedeck data generate questions|answers``: training data made with a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...text import plural
from .shared import MAX_SHOWN, add_command, notes_line, usage

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
    from ...data.model_sources import DEFAULT_BATCH, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S

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


def register(sub: argparse._SubParsersAction) -> None:
    g = add_command(sub, "generate", "make questions and answers with a model",
                    "Make training data with a local model or an OpenAI-compatible server.",
                    GENERATE_EPILOG)
    g.set_defaults(handler=lambda args: usage(g))
    gsub = g.add_subparsers(dest="generate_command", metavar="WHAT")
    p = add_command(gsub, "questions", "questions on a topic, deduplicated",
                    "Ask a model for COUNT distinct questions on a topic (exact and near "
                    "duplicates left out).", GENERATE_EPILOG)
    p.add_argument("--topic", required=True, metavar="TEXT")
    p.add_argument("--count", type=int, required=True, metavar="N")
    p.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help='a .jsonl ({"prompt": ...} per line) or .txt (one per line)')
    p.add_argument("--temp", type=float, default=0.8,
                   help="sampling temperature (default 0.8: varied questions)")
    _source_options(p)
    p.set_defaults(handler=_generate_questions)
    p = add_command(gsub, "answers", "an answer to every prompt, as mlx-lm chat JSONL",
                    "Answer every prompt of a file into mlx-lm chat JSONL.", GENERATE_EPILOG)
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


def _open_source(args):
    from ...data.model_sources import open_source
    from ...progress import print_progress

    return open_source(model=args.model, adapter=args.adapter, endpoint=args.endpoint,
                       api_key_env=args.api_key_env, concurrency=args.concurrency,
                       batch_size=args.batch_size, timeout=args.timeout, retries=args.retries,
                       progress=print_progress)


def _seed(args):
    if args.seed is None and not args.endpoint:
        return 0   # a local model's answers repeat from run to run unless asked otherwise
    return args.seed


def _generate_questions(args) -> int:
    from ...data.generate import generate_questions
    from ...errors import WorkFailed
    from ...progress import print_progress

    source = _open_source(args)
    try:
        result = generate_questions(source, args.topic, args.count, args.out, system=args.system,
                                    max_tokens=args.max_tokens, temp=args.temp,
                                    seed=_seed(args), progress=print_progress)
    finally:
        source.close()
    have = result.already + result.written
    print(f"{args.out}: {plural(have, 'question')} ({result.written:,} new, "
          f"{result.already:,} from before; {plural(result.duplicates, 'duplicate')} left out)")
    if have < args.count:
        raise WorkFailed(f"{args.out}: {have:,} of {args.count:,} questions after "
                         f"{result.rounds:,} rounds; the model keeps repeating itself: raise "
                         "--temp, or reword --topic")
    return 0


def _generate_answers(args) -> int:
    from ...data.convert import parse_split
    from ...data.generate import generate_answers
    from ...data.prompts import read_prompts
    from ...data.resumable_output import AnswerOutput
    from ...progress import print_progress

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
    counts = ", ".join(f"{p} ({plural(_count_lines(p), 'row')})" for p in result.files)
    print(f"wrote {counts or 'nothing'}; " + notes_line(
        (True, f"{plural(result.written, 'answer')} written"),
        (True, f"{result.already:,} from before"),
        (result.dropped, f"{result.dropped:,} flagged and left out"),
        (result.repeated, f"{plural(result.repeated, 'repeated prompt')} answered once"),
        (result.failed, f"{plural(len(result.failed), 'prompt')} failed (run again to retry)"),
        (True, plural(len(result.flags), 'flagged answer'))))
    return 1 if result.failed else 0


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
