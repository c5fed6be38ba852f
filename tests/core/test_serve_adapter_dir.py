"""The temporary adapter directory a numbered checkpoint is served from: gone with its server,
even when the server is killed before it can remove it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tunedeck.core.adapters import AdapterRef
from tunedeck.core.serve import ServeTarget, adapter_dir

HOLD = """
import sys
from pathlib import Path
from tunedeck.core.adapters import AdapterRef
from tunedeck.core.serve import ServeTarget, adapter_dir

run = Path(sys.argv[1])
target = ServeTarget(run, AdapterRef(run, run / "0000010_adapters.safetensors"), "checkpoint 10")
with adapter_dir(target) as path:
    print(path, flush=True)
    sys.stdin.read()  # held until the test closes stdin or kills this process
"""


def checkpoint_dir(tmp_path: Path) -> Path:
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / "adapter_config.json").write_text('{"fine_tune_type": "lora"}')
    (adapters / "0000010_adapters.safetensors").write_bytes(b"weights")
    return adapters


def holder(adapters: Path, scratch: Path) -> tuple[subprocess.Popen, Path]:
    """A process serving checkpoint 10 from an adapter directory in ``scratch``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(adapters)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    path = Path(proc.stdout.readline().strip())
    assert path.parent == scratch and (path / "adapters.safetensors").is_symlink()
    return proc, path


def test_a_killed_servers_adapter_directory_goes_at_the_next_start_and_a_live_ones_stays(
        tmp_path, monkeypatch):
    adapters = checkpoint_dir(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    killed, killed_dir = holder(adapters, scratch)
    alive, alive_dir = holder(adapters, scratch)
    foreign = scratch / "tunedeck-serve-made-by-hand"  # no lock file: not known to be abandoned
    foreign.mkdir()
    try:
        killed.kill()
        killed.wait()
        assert killed_dir.is_dir()  # SIGKILL: nothing ran to remove it
        target = ServeTarget(adapters, AdapterRef(adapters, adapters / "0000010_adapters.safetensors"),
                             "checkpoint 10")
        with adapter_dir(target) as mine:
            assert not killed_dir.exists()
            assert alive_dir.is_dir() and foreign.is_dir()
            assert (mine / "adapters.safetensors").resolve() == (adapters / "0000010_adapters.safetensors")
        assert not mine.exists()
    finally:
        alive.stdin.close()
        assert alive.wait(timeout=300) == 0
    assert not alive_dir.exists()
