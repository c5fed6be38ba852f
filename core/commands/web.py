"""``tunedeck web``: the same app in a browser tab, reachable from this machine only unless asked.

The policy lives here (which address, the warning for a wider one); the serving itself is the
UI's (tunedeck.tui.web), passed in as ``open_app`` like the terminal app, so core stays headless.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from ..errors import BadInput
from .app import _require_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8800

EXAMPLES = """\
examples:
  tunedeck web                         the project here, at http://127.0.0.1:8800/?token=...
  tunedeck web demo-project --port 9000
  ssh -L 8800:127.0.0.1:8800 mac-studio    then open the printed URL on your own machine

Each start makes a new token; the page, its connection and downloads refuse requests without it.
Closing the tab ends that tab's app, never a run: reopen the URL to reattach."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "web", help="serve the app in a browser tab (this machine only, with a token)",
        description="Serve the full app on PROJECT_DIR (default: the current directory) to a "
                    "browser tab. It listens on 127.0.0.1 unless --host says otherwise and prints "
                    "the URL to open, with a token made for this start.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("project", nargs="?", default=".", metavar="PROJECT_DIR")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--host", metavar="ADDR", default=None,
                   help=f"address to listen on (default {DEFAULT_HOST}); any other than a loopback "
                        "address lets other machines reach the app, with only the token to stop them")
    p.set_defaults(handler=_web)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def _web(args) -> int:
    project = Path(args.project)
    if not project.is_dir():
        raise BadInput(f"{project}: not a directory")
    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port: must be between 0 and 65535 (got {args.port})")
    host = DEFAULT_HOST if args.host is None else args.host.strip()
    if not host:
        raise BadInput("--host: an address is needed (for example 127.0.0.1)")
    if not is_loopback(host):
        print(f"tunedeck web: warning: listening on {host}, not only on this machine: anyone who "
              "can reach this address and learns the token can drive the app and start runs; "
              "prefer an SSH tunnel to 127.0.0.1", file=sys.stderr)
    _require_app(args)
    return args.open_app(project=project.resolve(), web=(host, args.port))
