"""``tunedeck serve``: a checkpoint (or a model) behind mlx-lm's OpenAI-compatible server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  tunedeck serve runs/demo-1                            the latest checkpoint on 127.0.0.1:8080
  tunedeck serve runs/demo-1 --checkpoint best --port 8181
  tunedeck serve runs/demo-1/export-200-mlx             an exported model
  tunedeck serve demo --host 0.0.0.0                    reachable from other machines (no authentication!)

Clients send the model name "default_model". Ctrl-C stops the server."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..serve import DEFAULT_PORT

    p = subparsers.add_parser(
        "serve", help="serve a checkpoint with an OpenAI-compatible API (mlx_lm.server)",
        description="Run mlx-lm's OpenAI-compatible server with RUN's checkpoint as its adapter (or a "
                    "MODEL as it is), wait until it answers, and print the base URL, the model name "
                    "and a curl example. It binds 127.0.0.1 and accepts web pages from the loopback "
                    "only, unless --host says otherwise.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", type=Path, metavar="RUN|MODEL")
    p.add_argument("--checkpoint", metavar="ITER|best|final",
                   help="which checkpoint of RUN (default: the latest numbered one)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--host", metavar="ADDR",
                   help="address to bind (default 127.0.0.1); any other is reachable without authentication")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..errors import BadInput
    from ..serve import Address, is_loopback, no_auth_warning, serve_here, serve_target

    if not 0 < args.port < 65536:
        raise BadInput(f"--port: must be 1..65535 (got {args.port})")
    host = args.host or "127.0.0.1"
    address = Address(host, args.port, allow_remote=args.host is not None)
    target = serve_target(args.target, args.checkpoint)
    if not is_loopback(host):
        print(no_auth_warning(host, args.port), file=sys.stderr, flush=True)
    print(f"starting mlx_lm.server for {target.label}…", file=sys.stderr, flush=True)

    def ready() -> None:
        print(f"serving {target.label}\n"
              f"  base URL  {address.base_url}\n"
              f"  model     {address.model_name}\n"
              f"  try       {address.curl_example()}\n"
              "Ctrl-C stops it.", flush=True)

    # mlx_lm.server runs here, in this process, as it does by hand; it returns after Ctrl-C.
    serve_here(target, address, ready)
    print("server stopped", file=sys.stderr, flush=True)
    # The server is down and its generation thread joined; what is left is the interpreter's
    # teardown, in which MLX's native threads can hit std::terminate ("terminate called without
    # an active exception", exit -6), about one Ctrl-C in five under load. Nothing remains to
    # flush or clean (the adapter directory is gone), so end here.
    sys.stdout.flush()
    os._exit(0)
