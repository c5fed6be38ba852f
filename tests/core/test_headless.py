"""The core stays headless and cheap to start; nothing bare lands in site-packages."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import tunedeck.core

CORE_MODULES = sorted(
    m.name for m in pkgutil.walk_packages(tunedeck.core.__path__, prefix="tunedeck.core.")
)


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd="/")
    return set(out.stdout.split())


def test_every_core_module_imports_without_textual_or_rich():
    assert "tunedeck.core.runner" in CORE_MODULES and "tunedeck.core.cli" in CORE_MODULES
    imports = "; ".join(f"import {m}" for m in CORE_MODULES)
    loaded = _imported_after(imports)
    leaked = {m for m in loaded if m.split(".")[0] in ("textual", "rich", "textual_plotext")}
    assert not leaked, f"core pulled in {sorted(leaked)}"
    heavy = {m for m in loaded if m.split(".")[0] in ("mlx", "mlx_lm", "transformers")}
    assert not heavy, f"core imports these at import time: {sorted(heavy)[:5]}"


def test_nothing_bare_is_installed():
    proc = subprocess.run([sys.executable, "-c", "import core"], capture_output=True, text=True, cwd="/")
    assert proc.returncode != 0 and "No module named 'core'" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "import tui"], capture_output=True, text=True, cwd="/")
    assert proc.returncode != 0


def test_help_does_not_load_mlx_or_textual():
    loaded = _imported_after(
        "from tunedeck.tui.launch import main; sys.argv = ['tunedeck', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass")
    assert not {m for m in loaded if m.split(".")[0] in ("mlx", "mlx_lm", "textual", "transformers")}


def test_help_explains_every_command():
    exe = Path(sys.executable).with_name("tunedeck")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("demo", "watch", "data", "train", "resume", "runs", "stop", "metrics", "chat"):
        assert f"    {command}" in out
    out = subprocess.run([str(exe), "chat", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--adapter" in out and "examples:" in out
