"""``tunedeck data check|convert|stats|generate``: datasets before training, headless.

Output contract: every problem is a ``FILE:LINE: message`` line on standard output (warnings
read ``FILE:LINE: warning: message``), followed by a summary per file; progress goes to standard
error. Exit 0 when mlx_lm.lora can use the data, 2 when it cannot.

Each subcommand has its module here (check, convert, stats, generate), with its options, its
help and its handler; this one hangs them under ``tunedeck data``.
"""

from __future__ import annotations

import argparse

from . import check, convert, generate, stats
from .shared import add_command, usage


def register(subparsers: argparse._SubParsersAction) -> None:
    data = add_command(
        subparsers, "data", "check, convert, measure and generate datasets",
        "Check, convert, measure and generate datasets for mlx_lm.lora.",
        "examples:\n  tunedeck data check data/\n  tunedeck data convert alpaca.json --out "
        "data/\n  tunedeck data stats data/ --model demo\n  tunedeck data generate answers "
        "--prompts questions.txt --model demo --out data/")
    data.set_defaults(handler=lambda args: usage(data))
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND")
    for command in (check, convert, stats, generate):   # in the order --help lists them
        command.register(sub)
