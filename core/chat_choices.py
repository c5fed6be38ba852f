"""What the Chat pane offers to talk to: models on this machine and in the project, and every
run's adapters (latest, best, each checkpoint). Scanned in a thread: it reads run files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .adapters import AdapterRef

BASE = "base"  # the adapter choice "none": the base model alone


@dataclass(frozen=True)
class AdapterChoice:
    label: str
    adapter: Optional[AdapterRef]
    model: Optional[str]  # the model the run trained on, when known


def model_label(path: str) -> str:
    return Path(path).name or path


def scan_choices(project: Optional[Path]) -> tuple[list[tuple[str, str]], dict[str, AdapterChoice]]:
    """The models and adapters to offer: the project's model and its runs' models, the local
    models, and for every run of the project its latest, its best and each checkpoint."""
    from .checkpoints import checkpoint_index
    from .models import find_local_models
    from .rundir import find_runs

    models: dict[str, str] = {}
    adapters: dict[str, AdapterChoice] = {BASE: AdapterChoice("none (the base model)", None, None)}
    if project is not None:
        configured = _configured_model(project)
        if configured:
            models[configured] = f"{model_label(configured)} (project)"
        for run in reversed(find_runs(project / "runs")):  # the newest first
            model = run.read_status().get("model")
            if model:
                models.setdefault(model, model_label(model))
            checkpoints = checkpoint_index(run)
            if not checkpoints:
                continue
            latest = checkpoints[-1]
            best = next((c for c in checkpoints if c.best), None)
            picks = [(f"{run.name}:latest", f"{run.name} · latest ({latest.iteration})", latest)]
            if best is not None:
                picks.append((f"{run.name}:best", f"{run.name} · best ({best.iteration})", best))
            picks += [(f"{run.name}:{c.iteration}", f"{run.name} · {c.iteration}", c)
                      for c in reversed(checkpoints)]
            for key, label, c in picks:
                adapters[key] = AdapterChoice(label, AdapterRef(c.path.parent, c.path), model)
    for path in find_local_models():
        models.setdefault(str(path), model_label(str(path)))
    return list((label, value) for value, label in models.items()), adapters


def _configured_model(project: Path) -> Optional[str]:
    from .config import TrainConfig

    try:
        model = TrainConfig.from_toml(project / "tunedeck.toml").resolve_paths(project).model
    except Exception:  # no config or a broken one: the other models are still offered
        return None
    if model == "demo":
        from .demo_model import demo_model_dir, is_demo_model_built

        return str(demo_model_dir()) if is_demo_model_built(demo_model_dir()) else "demo"
    return model
