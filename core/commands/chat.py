"""``tunedeck chat``: one streamed answer, or a line-mode conversation on standard input."""

from __future__ import annotations

import argparse
import sys

from ..errors import BadInput
from ..text import literal

EXAMPLES = """\
examples:
  tunedeck chat --model demo --prompt "What is the capital of France?" --temp 0
  tunedeck chat --model demo --adapter runs/demo-1/adapters            (multi-turn on stdin)
  tunedeck chat --model demo --adapter runs/demo-1/adapters/0000200_adapters.safetensors --prompt Hi

In the line mode every input line is one user turn; /clear forgets the history; EOF (Ctrl-D) ends."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat", help="chat with a model, optionally with an adapter",
        description="Answer one --prompt (streamed to stdout through the model's chat template), "
                    "or without --prompt hold a multi-turn chat on standard input until EOF.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a local MLX model directory, or 'demo'")
    p.add_argument("--adapter", metavar="DIR|CHECKPOINT_FILE",
                   help="an adapter directory (or run directory), or one numbered checkpoint file")
    p.add_argument("--prompt", help="answer this one prompt and exit")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-tokens", type=int, default=256, help="answer length limit (default 256)")
    p.add_argument("--temp", type=float, default=0.7, help="sampling temperature; 0 is greedy (default 0.7)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (default 1.0)")
    p.add_argument("--seed", type=int, help="random seed for reproducible sampling")
    p.set_defaults(handler=run)


def _check(args) -> None:
    if args.max_tokens < 1:
        raise BadInput(f"--max-tokens: must be at least 1 (got {args.max_tokens})")
    if args.temp < 0:
        raise BadInput(f"--temp: must be >= 0 (got {args.temp})")
    if not 0 < args.top_p <= 1:
        raise BadInput(f"--top-p: must be in (0, 1] (got {args.top_p})")


def run(args) -> int:
    _check(args)
    from ..adapters import resolve_adapter
    from ..chat import ChatModel, Conversation, GenerationSettings
    from ..models import resolve_model
    from ..progress import print_progress

    model_dir = resolve_model(args.model, progress=print_progress)
    adapter = resolve_adapter(args.adapter) if args.adapter else None
    chat = ChatModel(model_dir, adapter)
    settings = GenerationSettings(max_tokens=args.max_tokens, temp=args.temp, top_p=args.top_p,
                                  seed=args.seed)
    conversation = Conversation(system=args.system)
    show = literal if sys.stdout.isatty() else (lambda s: s)

    def answer(user: str) -> None:
        parts = []
        for chunk in chat.stream(conversation.messages(user), settings):
            parts.append(chunk.text)
            sys.stdout.write(show(chunk.text))
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        conversation.add(user, "".join(parts))

    if args.prompt is not None:
        answer(args.prompt)
        return 0
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stderr.write(">>> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.strip() == "/clear":
            conversation.clear()
            continue
        answer(line)
