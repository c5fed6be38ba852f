"""Commands that open the full-screen app: ``tunedeck [PROJECT_DIR]``, ``demo`` and ``watch``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BadInput, WorkFailed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "open", help="open the app on a project directory (the default command)",
        description="Open the full-screen app on PROJECT_DIR (default: the current directory).")
    p.add_argument("project", nargs="?", default=".", metavar="PROJECT_DIR")
    p.set_defaults(handler=_open)

    p = subparsers.add_parser(
        "demo", help="set up the offline demo project and open the app",
        description="Prepare the offline demo model (SmolLM2-135M-Instruct, converted once) and a "
                    "demo project with the sample dataset, then open the app on it.")
    p.add_argument("--dir", type=Path, default=None,
                   help="where to create the demo project (default: ./demo-project)")
    p.add_argument("--no-open", action="store_true", help="prepare everything but do not open the app")
    p.set_defaults(handler=_demo)

    p = subparsers.add_parser(
        "watch", help="watch a run, an mlx-lm log file or a pipe in the Training pane",
        description="Open the Training pane attached to RUN_DIR, to any mlx-lm log file, or to "
                    "standard input: `mlx_lm.lora ... | tunedeck watch -`.")
    p.add_argument("target", metavar="RUN_DIR|LOG|-")
    p.set_defaults(handler=_watch)


def _require_app(args) -> None:
    if args.open_app is None:
        raise WorkFailed("the full-screen app is not available in this entry point")


def _open(args) -> int:
    project = Path(args.project)
    if not project.is_dir():
        raise BadInput(f"{project}: not a directory")
    _require_app(args)
    return args.open_app(project=project.resolve())


def _demo(args) -> int:
    from ..demo_project import create_demo_project
    from ..demo_model import ensure_demo_model
    from ..progress import print_progress

    ensure_demo_model(progress=print_progress)
    project = create_demo_project(args.dir or Path("demo-project"))
    print(f"demo project ready: {project}")
    if args.no_open:
        return 0
    _require_app(args)
    return args.open_app(project=project)


def _watch(args) -> int:
    if args.target != "-" and not Path(args.target).exists():
        raise BadInput(f"{args.target}: no such run directory or log file")
    _require_app(args)
    return args.open_app(watch=args.target)
