"""``tunedeck export``: a checkpoint as a fused MLX model, a GGUF file or an Ollama model, verified."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  tunedeck export runs/demo-1 --to mlx                     the latest checkpoint, fused
  tunedeck chat --model runs/demo-1/export-200-mlx --prompt Hi --temp 0
  tunedeck export runs/demo-1 --checkpoint best --to gguf
  tunedeck export runs/demo-1 --to ollama --name my-model --create
  tunedeck export demo --to gguf --out smollm2-gguf          a model as it is, no adapter

Progress by stage goes to stderr. Every export is checked against base + adapter (greedy answers
to prompts from the test split, token by token); the result is shown and kept in DIR/verify.json.
Exit code 1 when the check fails (the export is kept, so it can be inspected)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..chat import GenerationSettings

    chat = GenerationSettings()
    p = subparsers.add_parser(
        "export", help="fuse a checkpoint into a model (MLX, GGUF, Ollama), verified",
        description="Fuse one checkpoint of RUN into its base model with mlx-lm's own fuse code and "
                    "write it as an MLX model directory, a GGUF file (llama family) or a GGUF plus an "
                    "Ollama Modelfile. A MODEL (a directory, or 'demo') is converted as it is. "
                    "DIR must not exist unless --force.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, metavar="RUN|MODEL")
    p.add_argument("--checkpoint", metavar="ITER|best|final",
                   help="which checkpoint (default: the latest numbered one)")
    p.add_argument("--to", choices=("mlx", "gguf", "ollama"), default="mlx", help="format (default mlx)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where to write it (default RUN/export-<checkpoint>-<format>)")
    p.add_argument("--dequantize", action="store_true",
                   help="a quantized base is saved in full precision (GGUF always is)")
    p.add_argument("--name", help="model name (default <run>-<checkpoint>)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.add_argument("--gguf-type", choices=("f16", "q8_0"), default="f16",
                   help="GGUF weight type (default f16)")
    p.add_argument("--verify-prompts", type=int, default=3, metavar="K",
                   help="prompts answered by both models in the check (default 3)")
    p.add_argument("--temp", type=float, default=chat.temp,
                   help=f"Ollama: the Modelfile's temperature (default {chat.temp})")
    p.add_argument("--top-p", type=float, default=chat.top_p,
                   help=f"Ollama: the Modelfile's top_p (default {chat.top_p})")
    p.add_argument("--system", help="Ollama: the Modelfile's system prompt")
    p.add_argument("--create", action="store_true",
                   help="Ollama: run `ollama create` when ollama is on PATH")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def _stage(message: str, fraction=None) -> None:
    print(f"export: {message}", file=sys.stderr, flush=True)


def run(args) -> int:
    from ..errors import BadInput, WorkFailed
    from ..export import ExportRequest, export

    if args.create and args.to != "ollama":
        raise BadInput("--create: only with --to ollama")
    if args.create and shutil.which("ollama") is None:
        raise BadInput("--create: ollama is not on PATH (install it, or run the printed command later)")
    request = ExportRequest(run=args.run, to=args.to, checkpoint=args.checkpoint, out=args.out,
                            dequantize=args.dequantize, name=args.name, force=args.force,
                            gguf_type=args.gguf_type, prompts=args.verify_prompts,
                            temperature=args.temp, top_p=args.top_p, system=args.system)
    result = export(request, progress=_stage)
    command = ["ollama", "create", result.name, "-f", str(result.out / "Modelfile")]
    if args.json:
        report = result.to_json()
        if args.to == "ollama":
            report["ollama_create"] = " ".join(command)
        print(json.dumps(report, indent=1))
    else:
        _show(result)
        if args.to == "ollama":
            print(" ".join(command))
    if args.to == "ollama":
        if args.create:
            if subprocess.run(command).returncode != 0:
                raise WorkFailed("ollama create failed (its output is above)")
    if not result.verified:
        raise WorkFailed(f"{result.out}: exported, but the verification failed (see {result.out}/verify.json)")
    return 0


def _show(result) -> None:
    print(f"exported {result.checkpoint} to {result.out} ({result.to})")
    for name, check in result.verification.items():
        print(f"  {name:10} {_verdict(check)}")
        divergence = check.get("divergence") if isinstance(check, dict) else None
        if divergence:
            print(f"    first difference: prompt {divergence['prompt'] + 1}, token {divergence['token'] + 1}; "
                  f"max |logit difference| {divergence['max_abs_logit_diff']:.3g}")
            print(f"    base + adapter: {divergence['expected_text']!r}")
            print(f"    export:         {divergence['got_text']!r}")
        if isinstance(check, dict) and check.get("note"):
            print(f"    {check['note']}")
    if result.to == "mlx":
        print(f"chat with it: tunedeck chat --model {result.out}")


def _verdict(check) -> str:
    if not isinstance(check, dict):
        return str(check)
    if check.get("skipped"):
        return f"skipped ({check['skipped']})"
    what = check.get("summary", "")
    return ("equal" if check.get("equal") else "DIFFERENT") + (f": {what}" if what else "")
