"""Ollama Modelfiles: the TEMPLATE renders the same prompt as the model's chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tinymodel import CHAT_TEMPLATE, build_tokenizer
from tunedeck.core.errors import BadInput
from tunedeck.core.export.go_template import ollama_data, render
from tunedeck.core.export.ollama import load_tokenizer, match_style, parse_modelfile, write_modelfile

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

TWO_TURNS = [{"role": "system", "content": "You are terse."},
             {"role": "user", "content": "What is the capital of France?"},
             {"role": "assistant", "content": "Paris."},
             {"role": "user", "content": "And of Italy?"}]


def tokenizer_dir(root: Path, template: str, adds_bos: bool = False, **config) -> Path:
    """The tiny tokenizer with ``template``; ``adds_bos``: it puts ``bos_token`` in front of what
    it encodes, as Llama 3's and Mistral's do (and as SmolLM2's does not)."""
    root.mkdir(parents=True)
    build_tokenizer(root)
    if adds_bos:
        from tokenizers import Tokenizer, processors

        bos = config["bos_token"]
        tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        tok.add_special_tokens([bos])
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))])
        tok.save(str(root / "tokenizer.json"))
    path = root / "tokenizer_config.json"
    settings = json.loads(path.read_text())
    settings.update(chat_template=template, **config)
    path.write_text(json.dumps(settings))
    return root


def modelfile(tmp_path: Path, model_dir: Path, system=None) -> dict:
    path = tmp_path / "Modelfile"
    write_modelfile(path, tmp_path / "m.gguf", model_dir, temperature=0.2, top_p=0.9, num_ctx=1024,
                    system=system)
    return parse_modelfile(path.read_text())


def rendered_by_ollama(instructions: dict, messages: list[dict]) -> str:
    return render(instructions["TEMPLATE"], ollama_data(messages, instructions.get("SYSTEM")))


def rendered_by_hf(model_dir: Path, messages: list[dict]) -> str:
    tokenizer = load_tokenizer(model_dir)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_chatml_template_renders_the_same_two_turn_prompt(tmp_path, tiny_model):
    instructions = modelfile(tmp_path, tiny_model)
    assert instructions["FROM"] == "./m.gguf"
    for messages in (TWO_TURNS, TWO_TURNS[1:]):
        assert rendered_by_ollama(instructions, messages) == rendered_by_hf(tiny_model, messages)
    assert ("stop", '"<|im_end|>"') in instructions["PARAMETER"]
    assert ("temperature", "0.2") in instructions["PARAMETER"]
    assert ("top_p", "0.9") in instructions["PARAMETER"]
    assert ("num_ctx", "1024") in instructions["PARAMETER"]
    assert "SYSTEM" not in instructions


def test_llama3_template_renders_the_same_two_turn_prompt_after_bos(tmp_path):
    model_dir = tokenizer_dir(tmp_path / "llama3", LLAMA3_TEMPLATE, adds_bos=True,
                              bos_token="<|begin_of_text|>")
    instructions = modelfile(tmp_path, model_dir, system="Answer in French.")
    messages = TWO_TURNS[1:]
    hf = rendered_by_hf(model_dir, [{"role": "system", "content": "Answer in French."}, *messages])
    # llama.cpp puts BOS in front itself (the GGUF's add_bos_token flag).
    assert hf.startswith("<|begin_of_text|><|start_header_id|>system")
    assert "<|begin_of_text|>" + rendered_by_ollama(instructions, messages) == hf
    assert instructions["SYSTEM"] == "Answer in French."
    assert ("stop", '"<|eot_id|>"') in instructions["PARAMETER"]


def test_a_template_that_inserts_a_default_system_prompt_gets_it_as_system(tmp_path):
    default = "You are a helpful assistant named Deck."
    template = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + default
                + "<|im_end|>\n{% endif %}" + CHAT_TEMPLATE)
    model_dir = tokenizer_dir(tmp_path / "smol", template)
    instructions = modelfile(tmp_path, model_dir)
    assert instructions["SYSTEM"] == default
    for messages in (TWO_TURNS, TWO_TURNS[1:]):
        assert rendered_by_ollama(instructions, messages) == rendered_by_hf(model_dir, messages)


def test_a_bos_the_tokenizer_does_not_add_is_the_templates_to_write(tmp_path):
    # SmolLM2 (the demo model): BOS is <|im_start|>, which opens the first turn, and the tokenizer
    # does not add it, so neither does llama.cpp. Taken for a BOS llama.cpp adds, it was cut off
    # and the demo's template matched no style.
    default = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    template = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + default
                + "<|im_end|>\n{% endif %}" + CHAT_TEMPLATE)
    model_dir = tokenizer_dir(tmp_path / "smol", template, bos_token="<|im_start|>")
    instructions = modelfile(tmp_path, model_dir)
    assert instructions["SYSTEM"] == default
    for messages in (TWO_TURNS, TWO_TURNS[1:]):
        assert rendered_by_hf(model_dir, messages).startswith("<|im_start|>system")
        assert rendered_by_ollama(instructions, messages) == rendered_by_hf(model_dir, messages)


@pytest.mark.demo
def test_the_demo_models_template_is_chatml_with_smollms_system_prompt(tmp_path, demo_model):
    instructions = modelfile(tmp_path, demo_model)
    assert instructions["SYSTEM"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    for messages in (TWO_TURNS, TWO_TURNS[1:]):
        assert rendered_by_ollama(instructions, messages) == rendered_by_hf(demo_model, messages)


def test_an_unknown_template_is_refused_with_what_is_supported(tmp_path):
    model_dir = tokenizer_dir(tmp_path / "odd", "{% for m in messages %}### {{ m['content'] }}\n{% endfor %}")
    with pytest.raises(BadInput, match="ChatML, Llama 3, Mistral"):
        match_style(load_tokenizer(model_dir))


def test_go_template_subset_follows_gos_rules():
    data = {"Messages": [{"Role": "user", "Content": "a"}, {"Role": "assistant", "Content": "b"}],
            "System": ""}
    assert render("x  {{- .System -}}  y", data) == "xy"
    assert render('{{ range $i, $m := .Messages }}{{ $i }}{{ if eq $m.Role "user" }}U{{ else }}A{{ end }}'
                  '{{ end }}', data) == "0U1A"
    assert render("{{ if .System }}S{{ else if .Messages }}M{{ end }}", data) == "M"
    assert render('{{ if and .Messages (not .System) }}yes{{ end }}', data) == "yes"


def test_mistral_template_renders_the_same_two_turn_prompt(tmp_path):
    template = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
                "{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
    model_dir = tokenizer_dir(tmp_path / "mistral", template, adds_bos=True, bos_token="<s>",
                              eos_token="</s>")
    instructions = modelfile(tmp_path, model_dir)
    messages = TWO_TURNS[1:]
    assert "<s>" + rendered_by_ollama(instructions, messages) == rendered_by_hf(model_dir, messages)
    assert ("stop", '"[INST]"') in instructions["PARAMETER"]
