"""The tiny random Llama of tests/tinymodel.py with a SentencePiece tokenizer, as Llama 2 and Mistral ship.

The tokenizer is a SentencePiece BPE model with byte fallback trained here on the tiny corpus (a
``tokenizer.model``, in a few hundredths of a second), with the ``tokenizer.json`` transformers
converts from it and a ``tokenizer_config.json`` with ``<s>``/``</s>``/``<unk>`` and a Mistral-style
chat template. Capitals and brackets are outside the corpus, so byte pieces are exercised.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Optional

from tests.tinymodel import _corpus, build_tiny_model

# Mistral's: the BOS token, then [INST] … [/INST] around each user turn; no other roles.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('only user and assistant turns') }}{% endif %}"
    "{% endfor %}"
)


def build_sentencepiece_tokenizer(out: Path, vocab_size: int = 400, legacy: Optional[bool] = None) -> int:
    """Write tokenizer.model, tokenizer.json and tokenizer_config.json into ``out``. ``legacy`` is
    transformers' setting: True puts '▁' before every text after a special token, False (and
    unset) only at the very start."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus() + ["1234567 apples, 89 pears"]), model_writer=model,
        vocab_size=vocab_size, model_type="bpe", byte_fallback=True, split_digits=True,
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False, minloglevel=2)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
    }
    if legacy is not None:
        config["legacy"] = legacy
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    tokenizer._tokenizer.save(str(out / "tokenizer.json"))
    return len(tokenizer)


def build_tiny_sp_model(out: Path, seed: int = 0, legacy: Optional[bool] = None) -> Path:
    """Write a loadable model directory at ``out`` and return it: the BPE tiny model's weights and
    config, its tokenizer replaced by a SentencePiece one of the same size."""
    out = build_tiny_model(out, seed)
    config = json.loads((out / "config.json").read_text())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (out / name).unlink()
    assert build_sentencepiece_tokenizer(out, config["vocab_size"], legacy) == config["vocab_size"]
    config.update(bos_token_id=1, eos_token_id=2)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return out
