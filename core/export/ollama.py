"""An Ollama Modelfile for an exported GGUF: a TEMPLATE proven to render the same prompt as the
model's own chat template, its stop tokens, and the Chat settings.

Which template style a model speaks is found by rendering: the model's chat template (through its
tokenizer, as mlx-lm applies it) and each known Ollama TEMPLATE render one probe conversation, and
the style whose text is identical wins. A chat template that inserts a default system prompt when
none is given (SmolLM2's does) gets it as the Modelfile's SYSTEM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import BadInput
from .go_template import TemplateError, ollama_data, render


@dataclass(frozen=True)
class ChatStyle:
    name: str
    template: str
    stops: tuple[str, ...]


STYLES = (
    ChatStyle("ChatML",
              "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end -}}\n"
              "<|im_start|>assistant\n",
              ("<|im_start|>", "<|im_end|>")),
    ChatStyle("Llama 3",
              "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
              "{{ .Content }}<|eot_id|>{{ end -}}\n<|start_header_id|>assistant<|end_header_id|>\n\n",
              ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    ChatStyle("Mistral",
              '{{- range .Messages }}{{ if eq .Role "user" }}[INST] {{ .Content }} [/INST]'
              '{{ else if eq .Role "assistant" }}{{ .Content }}</s>{{ end }}{{ end }}',
              ("[INST]", "[/INST]")),
)

_PROBE = [{"role": "user", "content": "Name a colour."},
          {"role": "assistant", "content": "Blue."},
          {"role": "user", "content": "And another?"}]
_PROBE_SYSTEM = "You answer in one word."
_MARK = "\x00SYSTEM\x00"


def _hf_render(tokenizer, messages: list[dict]) -> Optional[str]:
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception:  # templates may refuse a system role (raise_exception in Jinja)
        return None
    from .gguf_file import special_flags

    bos = getattr(tokenizer, "bos_token", None)
    # Where the tokenizer adds BOS itself, so does llama.cpp under Ollama (the GGUF's
    # add_bos_token): the template's leading BOS is then not the TEMPLATE's to write. Where it
    # does not, a leading BOS is text like any other: SmolLM2's BOS is <|im_start|>, which opens
    # its first turn.
    if bos and text.startswith(bos) and special_flags(tokenizer)[0]:
        return text[len(bos):]
    return text


def _style_render(style: ChatStyle, messages: list[dict], system: Optional[str] = None) -> str:
    return render(style.template, ollama_data(messages, system))


def _default_system(style: ChatStyle, rendered: str) -> Optional[str]:
    """The system prompt a chat template inserts by itself, or None."""
    prefix, _, suffix = _style_render(style, _PROBE, _MARK).partition(_MARK)
    if rendered.startswith(prefix) and rendered.endswith(suffix) and len(rendered) > len(prefix) + len(suffix):
        found = rendered[len(prefix):len(rendered) - len(suffix)]
        if _style_render(style, _PROBE, found) == rendered:
            return found
    return None


def match_style(tokenizer) -> tuple[ChatStyle, Optional[str]]:
    """The style whose TEMPLATE renders what ``tokenizer``'s chat template renders, and the
    template's default system prompt (None when it has none)."""
    if not getattr(tokenizer, "chat_template", None):
        raise BadInput("the model has no chat template, so an Ollama TEMPLATE cannot be derived; "
                       "use --to gguf")
    plain = _hf_render(tokenizer, _PROBE)
    with_system = _hf_render(tokenizer, [{"role": "system", "content": _PROBE_SYSTEM}, *_PROBE])
    for style in STYLES:
        try:
            if with_system is not None and with_system != _style_render(
                    style, [{"role": "system", "content": _PROBE_SYSTEM}, *_PROBE]):
                continue
            if plain == _style_render(style, _PROBE):
                return style, None
            default = _default_system(style, plain or "")
            if default is not None:
                return style, default
        except TemplateError:
            continue
    raise BadInput("the model's chat template matches none of the Ollama templates tunedeck writes "
                   f"({', '.join(s.name for s in STYLES)}); use --to gguf and write the TEMPLATE by hand")


def load_tokenizer(model_dir: Path):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    return mlx_load_tokenizer(Path(model_dir))


def chat_style(model_dir: Path) -> tuple[ChatStyle, Optional[str]]:
    return match_style(load_tokenizer(model_dir))


def _quoted(text: str) -> str:
    if '"""' in text:
        raise BadInput('a Modelfile cannot hold text with """ in it (the system prompt?)')
    return f'"""{text}"""'


def modelfile_text(gguf_name: str, style: ChatStyle, *, temperature: float, top_p: float,
                   num_ctx: int, system: Optional[str]) -> str:
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(style.template)}"]
    lines += [f'PARAMETER stop "{stop}"' for stop in style.stops]
    lines += [f"PARAMETER temperature {temperature:g}", f"PARAMETER top_p {top_p:g}",
              f"PARAMETER num_ctx {num_ctx}"]
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    return "\n".join(lines) + "\n"


def write_modelfile(path: Path, gguf_file: Path, model_dir: Path, *, temperature: float,
                    top_p: float, num_ctx: int, system: Optional[str]) -> ChatStyle:
    from ..rundir import write_atomic

    style, default_system = chat_style(model_dir)
    write_atomic(path, modelfile_text(Path(gguf_file).name, style, temperature=temperature, top_p=top_p,
                                      num_ctx=num_ctx, system=system or default_system))
    return style


def parse_modelfile(text: str) -> dict:
    """The instructions of a Modelfile this module wrote: FROM, TEMPLATE, SYSTEM, PARAMETERs."""
    found: dict = {"PARAMETER": []}
    rest = text
    while rest.strip():
        rest = rest.lstrip("\n")
        word, _, rest = rest.partition(" ")
        if rest.startswith('"""'):
            value, _, rest = rest[3:].partition('"""')
            rest = rest.partition("\n")[2]
        else:
            value, _, rest = rest.partition("\n")
        if word == "PARAMETER":
            found["PARAMETER"].append(tuple(value.split(" ", 1)))
        else:
            found[word] = value
    return found
