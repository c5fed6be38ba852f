"""Which model a spec names: a local MLX model directory, 'demo', or a clear one-line refusal."""

from __future__ import annotations

import pytest

from tunedeck.core.demo_model import DEMO_MODEL_NAME
from tunedeck.core.errors import BadInput
from tunedeck.core.models import find_local_models, resolve_model


def _refusal(spec: str) -> str:
    with pytest.raises(BadInput) as failure:
        resolve_model(spec)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith(spec)
    return message


def test_a_model_directory_resolves_to_its_absolute_path(tiny_model, monkeypatch):
    assert resolve_model(str(tiny_model)) == tiny_model.resolve()
    monkeypatch.chdir(tiny_model.parent)
    assert resolve_model(tiny_model.name) == tiny_model.resolve()


def test_a_missing_path_is_bad_input(tmp_path):
    message = _refusal(str(tmp_path / "no-such-model"))
    assert "not found" in message and "demo" in message


def test_a_directory_without_config_json_is_not_a_model(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"")
    assert "config.json" in _refusal(str(tmp_path / "weights"))


def test_a_hub_id_is_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = _refusal("mlx-community/SmolLM2-135M-Instruct-8bit")
    assert "Hugging Face" in message and "not downloaded" in message


def test_local_models_come_from_the_home_and_the_hugging_face_cache(isolated_home, tmp_path,
                                                                    monkeypatch, tiny_model):
    models = isolated_home / "models"
    (models / "my-qwen").mkdir(parents=True)
    (models / "my-qwen" / "config.json").write_text("{}")
    (models / "not-a-model").mkdir()
    (models / f".{DEMO_MODEL_NAME}.building-123").mkdir()
    (models / f".{DEMO_MODEL_NAME}.building-123" / "config.json").write_text("{}")
    hub = tmp_path / "hf" / "hub"
    snapshot = hub / "models--org--gemma" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (hub / "models--org--empty" / "snapshots" / "def456").mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))

    found = find_local_models()
    assert found == [models / "my-qwen", snapshot]
    # The demo model is listed only once it is built; a half-built one never is.
    assert all(DEMO_MODEL_NAME not in str(p) for p in found)
    assert all(resolve_model(str(p)) == p.resolve() for p in found)


def _cached_model(hub, repo: str, revision: str = "abc123"):
    folder = hub / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)
    return snapshot


def test_a_hub_id_in_the_hugging_face_cache_is_its_snapshot(tmp_path, monkeypatch):
    from tunedeck.core.models import model_location

    monkeypatch.chdir(tmp_path)
    hub = tmp_path / "hf" / "hub"
    snapshot = _cached_model(hub, "org/gemma")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert resolve_model("org/gemma") == snapshot
    assert model_location("org/gemma") == snapshot
    message = _refusal("org/not-cached")
    assert "not in the Hugging Face cache" in message and "hf download org/not-cached" in message
    assert model_location("org/not-cached") is None


def test_a_new_project_starts_with_a_model_on_this_machine(isolated_home, tmp_path, monkeypatch):
    from tunedeck.core.models import default_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert default_model() == "demo"  # nothing else here: the demo model, built offline on first use
    snapshot = _cached_model(tmp_path / "hub", "org/gemma")
    assert default_model() == str(snapshot)
    from tunedeck.core.demo_model import BUILD_VERSION, MARKER_NAME, demo_model_dir

    demo = demo_model_dir()
    demo.mkdir(parents=True)

    (demo / "config.json").write_text("{}")
    (demo / MARKER_NAME).write_text('{"build_version": %s}' % __import__("json").dumps(BUILD_VERSION))
    assert default_model() == "demo"  # built: it comes first
