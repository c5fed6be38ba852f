"""What the ``data`` subcommands share: how many problem lines they show, when a progress line
is worth it, the feature-key options, the tokenizer, and the summary line's notes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...errors import BadInput

MAX_SHOWN = 50
# Below these sizes the work takes well under a second and a progress line is only noise.
CHECK_PROGRESS_BYTES = 16 << 20
TOKENIZE_PROGRESS_BYTES = 256 << 10


def feature_options(p: argparse.ArgumentParser) -> None:
    from ...data.formats import DEFAULT_KEYS, FEATURES

    for name in FEATURES:
        p.add_argument(f"--{name}-feature", metavar="KEY", default=None,
                       help=f"the record key mlx-lm reads as the {name} (its {name}_feature; "
                            f"default {getattr(DEFAULT_KEYS, name)!r}, or the project's)")
    p.add_argument("--config", type=Path, metavar="TOML",
                   help="the tunedeck.toml whose feature keys to use (default: the project's)")


def features_of(args) -> dict:
    """Feature keys: the project's tunedeck.toml, then the command line's."""
    from ...data.feature_keys import describe_features, find_project_config, project_features
    from ...data.formats import FEATURES

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


def add_command(sub: argparse._SubParsersAction, name: str, summary: str, description: str,
                epilog: str) -> argparse.ArgumentParser:
    """A subcommand's parser; its epilog (notes and examples) is shown as written."""
    return sub.add_parser(name, help=summary, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def progress_for(path, min_bytes: int):
    """The progress line for work on a file big enough to take a while; None otherwise."""
    from ...progress import print_progress

    return print_progress if Path(path).stat().st_size >= min_bytes else None


def load_tokenizer(model: str):
    """The model's tokenizer, said on the progress line: loading one can take seconds."""
    from ...data import tokens
    from ...progress import print_progress

    print_progress(f"loading the tokenizer of {model}", None)
    return tokens.load_tokenizer(model, progress=print_progress)


def max_seq_length(args) -> int:
    from ...data.tokens import DEFAULT_MAX_SEQ_LENGTH

    if args.max_seq_length is not None and args.max_seq_length < 1:
        raise BadInput("--max-seq-length must be at least 1")
    return args.max_seq_length or DEFAULT_MAX_SEQ_LENGTH


def notes_line(*notes: tuple[object, str]) -> str:
    """The notes whose condition holds, joined: a summary names only what happened."""
    return "; ".join(text for holds, text in notes if holds)
