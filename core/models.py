"""Which model a config or a command means: a local MLX model directory, the built-in demo, or
a Hugging Face id already in the local Hugging Face cache.

Models are never fetched from the Hugging Face Hub: tunedeck users are often offline, and a
silent multi-gigabyte download in the middle of a run start is worse than a clear error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from .errors import BadInput
from .home import tunedeck_home
from .progress import Progress

DEMO_SPEC = "demo"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]")


def resolve_model(spec: str, progress: Optional[Progress] = None) -> Path:
    """The model directory ``spec`` names: ``"demo"`` (built on first use), a local directory
    holding ``config.json``, or a Hub id whose snapshot is in the Hugging Face cache. Raises
    BadInput with one line for anything else."""
    if spec == DEMO_SPEC:
        from .demo_model import ensure_demo_model

        return ensure_demo_model(progress=progress)
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    if path.is_dir():
        raise BadInput(f"{spec}: not a model directory (no config.json in it)")
    if looks_like_hub_id(spec):
        snapshot = hub_snapshot(spec, "model")
        if snapshot is not None and _is_model_dir(snapshot):
            return snapshot
        raise BadInput(f"{spec}: not a local directory and not in the Hugging Face cache "
                       f"({_hf_hub_cache()}); Hub models are not downloaded by tunedeck: fetch it "
                       f"once with `hf download {spec}`, or give a local MLX model directory or 'demo'")
    raise BadInput(f"{spec}: model not found (give a local MLX model directory or 'demo')")


def model_location(spec: str) -> Optional[Path]:
    """Where ``spec``'s model is now, without building or fetching anything (None: nowhere yet).

    For what only reads a model (an estimate, a command to copy): cheap enough for a form."""
    if spec == DEMO_SPEC:
        from .demo_model import demo_model_dir, is_demo_model_built

        return demo_model_dir() if is_demo_model_built() else None
    path = Path(spec).expanduser()
    if _is_model_dir(path):
        return path.resolve()
    if looks_like_hub_id(spec):
        snapshot = hub_snapshot(spec, "model")
        return snapshot if snapshot is not None and _is_model_dir(snapshot) else None
    return None


def default_model() -> str:
    """The model a new project starts with: one on this machine. The demo model when it is
    built, else the first local model found, else the demo model (built offline on first use
    when its package is installed)."""
    from .demo_model import demo_model_dir

    found = find_local_models()
    if not found or found[0] == demo_model_dir():
        return DEMO_SPEC
    return str(found[0])


def hub_snapshot(repo_id: str, repo_type: str = "model") -> Optional[Path]:
    """The cached snapshot of a Hub repository (``repo_type`` "model" or "dataset"): the one
    ``refs/main`` names, else the newest; None when it was never downloaded."""
    if not looks_like_hub_id(repo_id):
        return None
    repo = _hf_hub_cache() / f"{repo_type}s--{repo_id.replace('/', '--')}"
    try:
        revision = (repo / "refs" / "main").read_text().strip()
    except OSError:
        revision = ""
    if revision and (repo / "snapshots" / revision).is_dir():
        return repo / "snapshots" / revision
    snapshots = [d for d in (repo / "snapshots").glob("*") if d.is_dir()]
    return max(snapshots, key=lambda d: d.stat().st_mtime) if snapshots else None


def looks_like_hub_id(spec: str) -> bool:
    """``org/name`` as the Hub spells repository ids (and not ``./x`` or ``~/x``)."""
    return _HUB_ID.fullmatch(spec) is not None


def find_local_models() -> list[Path]:
    """Model directories on this machine, for a picker: the demo model if it is built, the
    directories under ``<home>/models`` and the snapshots in the Hugging Face cache."""
    from .demo_model import demo_model_dir, is_demo_model_built

    found: list[Path] = []
    demo = demo_model_dir()
    if is_demo_model_built(demo):
        found.append(demo)
    models = tunedeck_home() / "models"
    if models.is_dir():
        # Names starting with a dot are tunedeck's own half-built or discarded directories.
        found.extend(sorted(d for d in models.iterdir()
                            if not d.name.startswith(".") and d != demo and _is_model_dir(d)))
    found.extend(sorted(d for d in _hf_hub_cache().glob("models--*/snapshots/*") if _is_model_dir(d)))
    return found


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _hf_hub_cache() -> Path:
    """Where huggingface_hub keeps downloads, honouring its environment variables."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "huggingface")
    return Path(hf_home).expanduser() / "hub"
