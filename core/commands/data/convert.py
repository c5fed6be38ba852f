"""``tunedeck data convert``: datasets into mlx-lm's train/valid/test.jsonl."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import BadInput
from ...text import plural
from .shared import CHECK_PROGRESS_BYTES, MAX_SHOWN, add_command, load_tokenizer, notes_line

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


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "convert", "convert datasets into mlx-lm train/valid/test.jsonl",
                    "Convert datasets into mlx-lm's train/valid/test.jsonl.", CONVERT_EPILOG)
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


def _convert(args) -> int:
    from ...data.convert import InvalidData, convert, expand_inputs, parse_split
    from ...progress import print_progress

    split = parse_split(args.split)
    inputs = expand_inputs(args.inputs)
    big = sum(p.stat().st_size for p in inputs) >= CHECK_PROGRESS_BYTES
    tokenizer = None
    if args.model:
        tokenizer = load_tokenizer(args.model)
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
    written = ", ".join(f"{p} ({plural(result.counts[p.stem], 'row')})" for p in result.files)
    print(f"wrote {written} as {result.target}")
    print(notes_line((True, f"read {plural(result.rows_read, 'row')}"),
                     (args.dedup, f"{plural(result.duplicates, 'duplicate')} removed"),
                     (result.skipped, f"{plural(result.skipped, 'invalid row')} left out"),
                     (result.rejected, f"{plural(result.rejected, 'row')} labelled false left out")))
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0
