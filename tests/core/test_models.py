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
