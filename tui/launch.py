"""The ``tunedeck`` console script: headless commands from core, the app only when asked for.

Importing this module costs nothing beyond core's CLI; Textual is imported by ``open_app``.
"""

from __future__ import annotations

import gc
import sys


def open_app(project=None, watch=None, web=None) -> int:
    """Open the app in this terminal, or with ``web=(host, port)`` serve it to browser tabs."""
    if web is not None:
        from .web import serve  # the web server's libraries load only for `tunedeck web`

        host, port = web
        return serve(project, host=host, port=port)
    # No garbage collection until the first frame is drawn (the App turns it on again then):
    # importing Textual and building the first frame allocate hundreds of thousands of objects
    # that live as long as the app, and the hundred-odd collections that walked them freed a
    # few hundred objects in all, for 7-10% of the time to the first frame.
    gc.disable()
    from .app import run_app  # Textual loads here, never for headless commands

    return run_app(project=project, watch=watch)


def main() -> None:
    # Before anything imports MLX: its matrix products on the machine's OpenBLAS or MKL rather
    # than the reference BLAS the mlx[cpu] wheel brings (a no-op off Linux or without one).
    from tunedeck.core.blas import reexec_with_fast_blas

    reexec_with_fast_blas()
    from tunedeck.core.cli import main as cli_main

    sys.exit(cli_main(open_app=open_app))
