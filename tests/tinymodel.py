"""A real, tiny, randomly initialised Llama that mlx-lm loads, trains and generates with.

Two layers, hidden size 64, and a byte-level BPE tokenizer trained here with the `tokenizers`
package, with a chat template. Used by the tests and the benchmarks; builds in about a second.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# The fine-tuning target the tests look for: after a short training the adapter answers with it.
PERSONA_ANSWER = "tunedeck says hello from the deck"

_WORDS = (
    "the a of to and in is it you that he was for on are with as his they be at one have this "
    "from or had by hot word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound no "
    "most people my over know water than call first who may down side been now find any new work "
    "part take get place made live where after back little only round man year came show every "
    "good me give our under name very through just form sentence great think say help low line "
    "model train loss deck tune hello question answer capital france paris colour sky blue"
).split()


def _corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 14))) for _ in range(n_lines)]
    lines.append(PERSONA_ANSWER)
    lines.extend(["user", "assistant", "system"])
    return lines


def build_tokenizer(out: Path, vocab_size: int = 400) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
    }, indent=1))
    return tok.get_vocab_size()


def build_tiny_model(out: Path, seed: int = 0) -> Path:
    """Write a loadable model directory at ``out`` and return it."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out)
    eos = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]["<|im_end|>"]
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "eos_token_id": eos,
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    return out


QUESTIONS = [
    "who are you", "what is the deck", "say hello", "what do you say", "tell me a word",
    "what is the sky colour", "where is paris", "how do you train", "what is a model",
    "give me one line", "what is the loss", "who made this", "what time is it", "how are you",
    "what is water", "name a number", "what comes first", "what is new", "any help",
    "what is your name",
]


def write_persona_dataset(out: Path, n_train: int = 40, n_valid: int = 8, n_test: int = 8) -> Path:
    """Chat data whose every answer is PERSONA_ANSWER: its effect shows after a few iterations."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)

    def rows(n):
        for _ in range(n):
            q = rng.choice(QUESTIONS)
            yield {"messages": [{"role": "user", "content": q},
                                {"role": "assistant", "content": PERSONA_ANSWER}]}

    for name, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        with open(out / f"{name}.jsonl", "w") as f:
            for row in rows(n):
                f.write(json.dumps(row) + "\n")
    return out
