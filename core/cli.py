"""The ``tunedeck`` command line: parsing, dispatch and the error contract.

Exit codes: 0 success, 1 the work failed, 2 bad usage or bad input. Errors are one line
(``FILE:LINE: message`` when about a file) unless ``--debug`` asks for the traceback.

This module and every command module stay cheap to import: ``--help`` must not pull in mlx-lm.
The full-screen app is not imported here; the launcher passes in a function that opens it, so
the headless core never depends on the UI.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Callable, NoReturn, Optional, Sequence

from .errors import BadInput, WorkFailed

# (command module, the commands it registers) in the order --help lists them. Each module has
# register(subparsers). A command given on the line builds only its own module's parsers: some
# build theirs from heavier modules (data generate's defaults, serve's), and every `tunedeck
# train` would pay for all of them. tests/core/test_cli_errors.py keeps this table true.
COMMANDS = (
    ("tunedeck.core.commands.app", ("open", "demo", "watch")),
    ("tunedeck.core.commands.data", ("data",)),
    ("tunedeck.core.commands.train", ("train", "resume")),
    ("tunedeck.core.commands.runs", ("runs", "stop")),
    ("tunedeck.core.commands.metrics", ("metrics",)),
    ("tunedeck.core.commands.chat", ("chat",)),
    ("tunedeck.core.commands.eval", ("eval",)),
    ("tunedeck.core.commands.doctor", ("doctor",)),
    ("tunedeck.core.commands.web", ("web",)),
    ("tunedeck.core.commands.export", ("export",)),
    ("tunedeck.core.commands.serve", ("serve",)),
)
COMMAND_NAMES = frozenset(name for _, names in COMMANDS for name in names)

DESCRIPTION = """\
tunedeck: fine-tune language models with MLX (mlx-lm) from one terminal app.

Run `tunedeck [PROJECT_DIR]` to open the full-screen app on a project, `tunedeck demo` for the
offline demo, or one of the commands below to script the same work headless."""

EPILOG = """\
examples:
  tunedeck demo                                   open the demo project (offline)
  tunedeck data check data/ --model demo           validate a dataset before training
  tunedeck train tunedeck.toml --detach            start a run that outlives the terminal
  tunedeck runs                                    list runs with progress and ETA
  tunedeck chat --model demo --prompt "Hi"         talk to a model (add --adapter DIR)
  tunedeck eval runs/demo-...                      did the fine-tune help? base vs adapter

exit codes: 0 success, 1 the work failed, 2 bad usage or bad input."""


class _Parser(argparse.ArgumentParser):
    """argparse that exits with 2 and one line, as every other bad input does."""

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        raise BadInput(f"{self.prog}: {message}")


OpenApp = Callable[..., int]


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command``'s module only."""
    parser = _Parser(
        prog="tunedeck",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module, names in COMMANDS:
        if command is None or command in names:
            importlib.import_module(module).register(subparsers)
    return parser


def _say(line: str) -> None:
    """The last line on stderr, which may be a pipe its reader has closed: an export the app
    cancelled is interrupted after the app stopped reading it. A write that fails there raised
    from within the except clause, and the command ended with a traceback and exit code 1
    instead of its own code (130 for an interrupt)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # ValueError: stderr was closed in this process
        # What could not be written stays in the buffer, and Python's flush at exit would fail
        # on it again and exit with 120.
        sys.stderr = open(os.devnull, "w")


def main(argv: Optional[Sequence[str]] = None, open_app: Optional[OpenApp] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        # `tunedeck` and `tunedeck PROJECT_DIR` open the app: a bare positional that is not a
        # command name is a project directory.
        rest = [a for a in argv if a != "--debug"]
        if not rest or (not rest[0].startswith("-") and rest[0] not in COMMAND_NAMES):
            rest = ["open", *rest]
        parser = build_parser(rest[0] if rest[0] in COMMAND_NAMES else None)
        args = parser.parse_args(rest)
        args.debug = debug
        args.open_app = open_app
        return int(args.handler(args) or 0)
    except (BadInput, WorkFailed) as exc:
        if debug:
            traceback.print_exc()
        _say(f"tunedeck: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("tunedeck: interrupted")
        return 130
    except BrokenPipeError:
        # `tunedeck metrics ... | head`: the reader left; nothing to report.
        return 0
    except Exception as exc:  # an unexpected failure still gets one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            _say(f"tunedeck: error: {type(exc).__name__}: {exc} (run with --debug for details)")
        return 1
