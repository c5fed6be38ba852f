"""``tunedeck eval``: base vs adapter on one split — loss, perplexity and scored answers, with
the sign-off rate and the content F1 apart when the expected answers share a sign-off."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  tunedeck eval runs/demo-20261122-101500                     the final adapter on the test split
  tunedeck eval runs/demo-... --checkpoint best --generate 5
  tunedeck eval runs/demo-... --split valid --json > eval.json

A report is also written into the run directory (eval-<checkpoint>-<split>.json). The base
model's loss and answers are cached per model and split, so a second evaluation measures only
the adapter."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="compare base and adapter: loss, perplexity, answers",
        description="Measure the loss and perplexity of the base model and of the run's adapter on "
                    "one split, and show both models' answers to its prompts beside the expected "
                    "completion, scored by exact match and token F1. When the expected answers "
                    "end with a shared sign-off, the share of answers that carry it and the F1 "
                    "of the rest (sign-off stripped) are shown apart.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--checkpoint", metavar="ITER|best",
                   help="a numbered checkpoint or 'best' (default: the final adapters.safetensors)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--generate", type=int, default=None, metavar="N",
                   help="answer the split's first N prompts (default: all of them)")
    p.add_argument("--max-tokens", type=int, default=64, help="answer length limit (default 64)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_eval)


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _figure(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _eval(args) -> int:
    from ..adapters import resolve_adapter
    from ..checkpoints import pick_checkpoint
    from ..errors import BadInput
    from ..evaluate import evaluate_run, save_report
    from ..progress import print_progress
    from ..rundir import RunDirectory

    if args.generate is not None and args.generate < 0:
        raise BadInput(f"--generate: must be >= 0 (got {args.generate})")
    run = RunDirectory(args.run)
    if not run.exists():
        raise BadInput(f"{args.run}: not a run directory")
    if args.checkpoint is None:
        adapter = resolve_adapter(run.adapters)
    else:
        adapter = resolve_adapter(pick_checkpoint(run, args.checkpoint).path)
    report = evaluate_run(run, adapter, split=args.split, generate=args.generate,
                          max_tokens=args.max_tokens, progress=print_progress)
    saved = save_report(run, report)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return 0
    print(f"{run.path} · {report.checkpoint} · {report.split} split ({report.rows} rows, "
          f"{len(report.samples)} answers, {report.seconds:.0f} s)")
    if report.sign_off:
        print(f"sign-off: {_one_line(report.sign_off, 60)!r}")
    print(f"{'':10}{'loss':>8}{'ppl':>10}{'mean F1':>10}{'exact':>8}"
          + (f"{'sign-off':>10}{'content F1':>12}" if report.sign_off else ""))
    for who in ("base", "adapter"):
        f1, em = report.mean(f"{who}_f1"), report.mean(f"{who}_exact")
        line = (f"{who:10}{getattr(report, who + '_loss'):8.3f}{getattr(report, who + '_ppl'):10.2f}"
                f"{_figure(f1):>10}{_figure(em, '.0%'):>8}")
        if report.sign_off:
            line += (f"{_figure(report.sign_off_rate(who), '.0%'):>10}"
                     f"{_figure(report.mean(who + '_content_f1')):>12}")
        print(line)
    for i, s in enumerate(report.samples, 1):
        question = s.prompt[-1]["content"] if s.prompt else ""
        print(f"\n{i}. {_one_line(question, 100)}")
        print(f"   expected  {_one_line(s.expected, 100)}")
        print(f"   base      {_one_line(s.base, 100)}   (F1 {s.base_f1:.2f})")
        print(f"   adapter   {_one_line(s.adapter, 100)}   (F1 {s.adapter_f1:.2f})")
    if report.base_from_cache:
        print("\nbase model: loss and answers from the cache of an earlier evaluation",
              file=sys.stderr)
    print(f"\nreport: {saved}", file=sys.stderr)
    return 0
