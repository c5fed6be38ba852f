"""GGUF files the way llama.cpp reads them, written with the ``gguf`` package's GGUFWriter.

A byte-level BPE vocabulary (Llama 3, Qwen, SmolLM) is written as ``tokenizer.ggml.model = gpt2``
with the merges and the name of the pre-tokenizer (llama.cpp splits text with its own regex for
that name); a SentencePiece one (Llama 2, Mistral: a ``tokenizer.model``) as ``llama`` with the
pieces, scores and piece types (see ``spm``). Both with token types as an INT32 array, the special
token ids, the add-bos/add-eos flags and the chat template. Tensor names come from gguf's own
tensor map. Q and K rows are stored in llama.cpp's interleaved rotary order; a model whose config
says ``rope_traditional`` (one converted from a GGUF, like the demo) already has them in that order.

Reading the file back (``check_gguf_file``) proves every tensor equals the fused model's and the
file's own vocabulary encodes sample texts to the same ids as the model's tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..errors import BadInput

# Hugging Face model_type → the llama.cpp architecture that runs it (gguf's MODEL_ARCH name).
ARCHITECTURES = {"llama": "LLAMA", "mistral": "LLAMA", "qwen2": "QWEN2", "qwen3": "QWEN3"}
# Qwen's split: Llama 3's, but every digit alone.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


# Llama 3's split: contractions, letters, numbers in threes, punctuation, new lines, spaces.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _pre_tokenizers() -> dict:
    """llama.cpp pre-tokenizer names → the same split built with ``tokenizers``."""
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as pt

    return {
        "llama-bpe": lambda: pt.Sequence([pt.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
                                          pt.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                       use_regex=False)]),
        "qwen2": lambda: pt.Sequence([pt.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
                                      pt.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                                   use_regex=False)]),
        "gpt-2": lambda: pt.ByteLevel(add_prefix_space=False, use_regex=True),
        # StarCoder-style: every digit alone, then GPT-2's split (SmolLM, SmolLM2).
        "smollm": lambda: pt.Sequence([pt.Digits(individual_digits=True),
                                       pt.ByteLevel(add_prefix_space=False, use_regex=True)]),
    }


def _unsupported(what: str) -> BadInput:
    return BadInput(f"{what}; GGUF export supports {', '.join(sorted(ARCHITECTURES))} models "
                    f"with a byte-level BPE tokenizer ({', '.join(_pre_tokenizers())} pre-tokenizers) "
                    "or a SentencePiece BPE one (tokenizer.model). --to mlx works for every model")


def _comparable(pre: Optional[dict]):
    """A pre-tokenizer's JSON without the fields that do not change how text is split."""
    if isinstance(pre, dict):
        return {k: _comparable(v) for k, v in pre.items() if k not in ("trim_offsets",)}
    if isinstance(pre, list):
        return [_comparable(v) for v in pre]
    return pre


def pre_tokenizer_name(tokenizer_json: dict) -> Optional[str]:
    from tokenizers import Tokenizer, models

    wanted = _comparable(tokenizer_json.get("pre_tokenizer"))
    for name, build in _pre_tokenizers().items():
        probe = Tokenizer(models.BPE())
        probe.pre_tokenizer = build()
        if _comparable(json.loads(probe.to_str())["pre_tokenizer"]) == wanted:
            return name
    return None


def check_gguf_support(model_dir: Path) -> tuple[str, str]:
    """Refuse, before any work, a model this writer cannot make a correct GGUF of. Returns
    llama.cpp's tokenizer model and pre-tokenizer names for it: ``gpt2`` and the split, or
    ``llama`` and ``default`` for SentencePiece."""
    from .spm import check_sentencepiece, sentencepiece_model

    config = json.loads((Path(model_dir) / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise _unsupported(f"{model_dir}: model type {model_type!r} cannot be exported to GGUF")
    scaling = config.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) not in ("linear", "default"):
        raise _unsupported(f"{model_dir}: rope scaling {scaling.get('rope_type', scaling.get('type'))!r} "
                           "is not written to GGUF yet")
    path = Path(model_dir) / "tokenizer.json"
    tokenizer_json = json.loads(path.read_text()) if path.exists() else {}
    model = tokenizer_json.get("model", {})
    if model.get("type") == "BPE" and not model.get("byte_fallback"):
        name = pre_tokenizer_name(tokenizer_json)
        if name is None:
            raise _unsupported(f"{path}: a pre-tokenizer llama.cpp would split differently")
        if _comparable(tokenizer_json.get("normalizer")) != _comparable(_normalizer_json(name)):
            raise _unsupported(f"{path}: a normalizer llama.cpp would not apply")
        return "gpt2", name
    proto = sentencepiece_model(model_dir)
    if proto is not None:
        check_sentencepiece(Path(model_dir) / "tokenizer.model", proto)
        return "llama", "default"
    if tokenizer_json:
        raise _unsupported(f"{path}: not a byte-level BPE tokenizer, and no SentencePiece tokenizer.model "
                           "(llama.cpp needs its scores)")
    raise _unsupported(f"{model_dir}: no tokenizer.json or tokenizer.model")


def _normalizer(pre: Optional[str]):
    """What llama.cpp does to text before splitting it, for that pre-tokenizer: Qwen's NFC."""
    from tokenizers import normalizers

    return normalizers.NFC() if pre == "qwen2" else None


def _normalizer_json(pre: str) -> Optional[dict]:
    from tokenizers import Tokenizer, models

    probe = Tokenizer(models.BPE())
    if _normalizer(pre) is not None:
        probe.normalizer = _normalizer(pre)
    return json.loads(probe.to_str())["normalizer"]


def _permuted(config: dict) -> bool:
    """Whether Q and K rows change order in the file: only llama.cpp's llama rotates interleaved
    pairs (Qwen uses the halves, as Hugging Face does), and a ``rope_traditional`` model has them."""
    import gguf

    return _arch(config) == gguf.MODEL_ARCH.LLAMA and not config.get("rope_traditional", False)


def _arch(config: dict):
    import gguf

    return getattr(gguf.MODEL_ARCH, ARCHITECTURES[config["model_type"]])


# -- the vocabulary ------------------------------------------------------------------------------
def _vocabulary(model_dir: Path, n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    import gguf

    tokenizer_json = json.loads((Path(model_dir) / "tokenizer.json").read_text())
    by_id = {i: t for t, i in tokenizer_json["model"]["vocab"].items()}
    kinds = {}
    for added in tokenizer_json.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        kinds[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    # The embedding may have more rows than the tokenizer has tokens: llama.cpp wants one token
    # per row, so the rest are named placeholders nobody can type.
    size = max(n_vocab, max(by_id) + 1)
    tokens, types = [], []
    for i in range(size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(int(kinds.get(i, gguf.TokenType.NORMAL)))
        else:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"].get("merges", [])]
    return tokens, types, merges


def special_flags(tokenizer) -> tuple[bool, bool]:
    """Whether the tokenizer adds BOS / EOS itself, by watching it encode: the GGUF's
    add_bos_token / add_eos_token, so llama.cpp (and Ollama) add them as it does."""
    hf = tokenizer._tokenizer
    plain = hf.encode("a", add_special_tokens=False)
    full = hf.encode("a")
    bos, eos = hf.bos_token_id, hf.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    return add_bos, add_eos


# -- tensors -------------------------------------------------------------------------------------
def _rotary_to_interleaved(w, n_head: int):
    """Hugging Face keeps each head's rotary pairs as two halves; llama.cpp wants them side by side."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _interleaved_to_rotary(w, n_head: int):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _heads(config: dict) -> tuple[int, int]:
    n_head = config["num_attention_heads"]
    return n_head, config.get("num_key_value_heads") or n_head


def gguf_tensors(weights: dict, config: dict) -> dict:
    """GGUF name → (numpy array in the file's layout, the model's name)."""
    import gguf
    import mlx.core as mx
    import numpy as np

    arch = _arch(config)
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    n_head, n_kv = _heads(config)
    permute = _permuted(config)
    out = {}
    for name, array in weights.items():
        if "rotary_emb" in name:
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise BadInput(f"tensor {name} has no GGUF name for a {config['model_type']} model")
        data = np.array(array.astype(mx.float32))
        if permute and name.endswith("self_attn.q_proj.weight"):
            data = _rotary_to_interleaved(data, n_head)
        elif permute and name.endswith("self_attn.k_proj.weight"):
            data = _rotary_to_interleaved(data, n_kv)
        out[target] = (data, name)
    return out


def _encoded(data, gguf_type: str):
    """The bytes to store and their GGML type. Norms and other vectors stay f32, as llama.cpp keeps them."""
    import gguf
    import numpy as np

    if data.ndim == 1:
        return data.astype(np.float32), None
    if gguf_type == "q8_0" and data.shape[-1] % 32 == 0:
        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return data.astype(np.float16), None


def write_gguf(path: Path, fused, name: str, gguf_type: str = "f16") -> None:
    import gguf
    from mlx.utils import tree_flatten

    config = fused.config
    tokenizer_model, pre = check_gguf_support(fused.base_dir)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[_arch(config)])
    n_head, n_kv = _heads(config)
    hidden = config["hidden_size"]
    writer.add_name(name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    head_dim = config.get("head_dim") or hidden // n_head
    writer.add_rope_dimension_count(head_dim)
    if config.get("head_dim"):  # Qwen3's heads are wider than hidden / heads
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    scaling = config.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if gguf_type == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)

    weights = dict(tree_flatten(fused.model.parameters()))
    n_vocab = weights["model.embed_tokens.weight"].shape[0]
    if tokenizer_model == "llama":
        from .spm import sentencepiece_model, sentencepiece_vocabulary

        vocabulary = sentencepiece_vocabulary(sentencepiece_model(fused.base_dir), fused.tokenizer, n_vocab)
        tokens, types = vocabulary.tokens, vocabulary.types
        writer.add_token_scores(vocabulary.scores)
        writer.add_add_space_prefix(vocabulary.add_space_prefix)
    else:
        tokens, types, merges = _vocabulary(fused.base_dir, n_vocab)
        writer.add_token_merges(merges)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    hf = fused.tokenizer._tokenizer
    for token_id, add in ((hf.bos_token_id, writer.add_bos_token_id), (hf.eos_token_id, writer.add_eos_token_id),
                          (hf.unk_token_id, writer.add_unk_token_id), (hf.pad_token_id, writer.add_pad_token_id)):
        if token_id is not None:
            add(int(token_id))
    add_bos, add_eos = special_flags(fused.tokenizer)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    if getattr(fused.tokenizer, "chat_template", None):
        writer.add_chat_template(fused.tokenizer.chat_template)

    for target, (data, _) in gguf_tensors(weights, config).items():
        stored, raw_type = _encoded(data, gguf_type)
        writer.add_tensor(target, stored, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# -- reading it back -----------------------------------------------------------------------------
def _tokenizer_fields(reader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items() if name.startswith("tokenizer.")}


def tokenizer_from_gguf(fields: Mapping[str, Any]):
    """A ``tokenizers`` tokenizer made only from a GGUF file's byte-level BPE vocabulary. ``fields``
    maps GGUF keys to their values: a GGUFReader's, or the metadata ``mx.load`` reads."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    keys = gguf.Keys.Tokenizer
    tokens = fields[keys.LIST]
    types = fields.get(keys.TOKEN_TYPE) or [int(gguf.TokenType.NORMAL)] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in fields.get(keys.MERGES) or []]
    pre = fields.get(keys.PRE)
    build = _pre_tokenizers().get(pre)
    if fields.get(keys.MODEL) != "gpt2" or build is None:
        raise BadInput(f"GGUF vocabulary {fields.get(keys.MODEL)!r} with pre-tokenizer {pre!r} cannot be "
                       "read back here")
    unknown = fields.get(keys.UNK_ID)
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                                     unk_token=None if unknown is None else tokens[unknown],
                                     fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = build()
    if _normalizer(pre) is not None:
        tokenizer.normalizer = _normalizer(pre)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    # Marked as added tokens so the split never cuts through them; the ids are the vocabulary's.
    control, user = int(gguf.TokenType.CONTROL), int(gguf.TokenType.USER_DEFINED)
    tokenizer.add_special_tokens([AddedToken(t, special=types[i] == control, normalized=False)
                                  for i, t in enumerate(tokens) if types[i] in (control, user)])
    return tokenizer


def _file_encoder(fields: Mapping[str, Any]) -> Callable[[str], list[int]]:
    """Text to ids by the GGUF file's own vocabulary, as llama.cpp will read it."""
    import gguf

    keys = gguf.Keys.Tokenizer
    if fields.get(keys.MODEL) == "llama":
        from .spm import LlamaCppSentencePiece

        # llama.cpp's default for a SentencePiece vocabulary is the prefix on.
        return LlamaCppSentencePiece(fields[keys.LIST], fields[keys.SCORES], fields[keys.TOKEN_TYPE],
                                     bool(fields.get(keys.ADD_PREFIX, True)), fields.get(keys.UNK_ID)).encode
    tokenizer = tokenizer_from_gguf(fields)
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


SAMPLE_TEXTS = ("Hello, world! It's 2024: 3.14159 apples cost $12.50.",
                "  leading spaces, tabs\tand\nnew lines  ",
                "naïve café — ünïcödé 東京 🙂",
                "the capital of france is paris")


def check_gguf_file(path: Path, fused, prompts: list[list[dict]]) -> dict:
    """(b): the file's tensors and vocabulary against the fused model's."""
    import gguf
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    reader = gguf.GGUFReader(str(path))
    stored = {t.name: t for t in reader.tensors}
    weights = dict(tree_flatten(fused.model.parameters()))
    expected = gguf_tensors(weights, fused.config)
    n_head, n_kv = _heads(fused.config)
    undo = _permuted(fused.config)
    mismatched = []
    for target, (data, source) in expected.items():
        tensor = stored.get(target)
        if tensor is None:
            continue
        kind = tensor.tensor_type
        have = np.asarray(tensor.data)
        if kind == gguf.GGMLQuantizationType.Q8_0:
            have = gguf.quants.dequantize(have, kind)
        have = have.reshape(data.shape)
        # The file's rows back in the model's order, then against the model's own tensor.
        if undo and source.endswith(("q_proj.weight", "k_proj.weight")):
            have = _interleaved_to_rotary(have, n_head if "q_proj" in source else n_kv)
        model_data = np.array(weights[source].astype(mx.float32))
        if kind == gguf.GGMLQuantizationType.Q8_0:
            want = gguf.quants.dequantize(gguf.quants.quantize(data, kind), kind)
            if undo and source.endswith(("q_proj.weight", "k_proj.weight")):
                want = _interleaved_to_rotary(want, n_head if "q_proj" in source else n_kv)
        else:
            want = model_data.astype(np.float32 if model_data.ndim == 1 else np.float16)
        if not np.array_equal(have, want):
            mismatched.append(source)
    missing = [n for n in expected if n not in stored]
    extra = [n for n in stored if n not in expected]
    tensors_equal = not (mismatched or missing or extra)
    tensors = {"equal": tensors_equal, "tensors": len(stored),
               "summary": f"{len(stored)} tensors equal the fused model's" if tensors_equal else
               f"mismatched {mismatched[:3]}, missing {missing[:3]}, unexpected {extra[:3]}"}

    tokenizer = fused.tokenizer
    fields = _tokenizer_fields(reader)
    encode = _file_encoder(fields)
    hf = tokenizer._tokenizer
    chat = bool(getattr(tokenizer, "chat_template", None))
    texts = list(SAMPLE_TEXTS)
    bare_note = None
    if fields.get(gguf.Keys.Tokenizer.MODEL) == "llama" and chat:
        # SentencePiece: compared where llama.cpp meets text, inside chat turns (see spm). Whether
        # a text outside any turn splits alike at its start is told, not required.
        bare = [t for t in texts if encode(t) != hf.encode(t, add_special_tokens=False)]
        if bare:
            bare_note = (f"outside a chat turn {len(bare)} of {len(texts)} texts split differently at "
                         "their start: llama.cpp has one switch for a leading '\u2581', set the way this "
                         "tokenizer treats text after a special token, and it treats the start of a text "
                         "otherwise")
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                               tokenize=False) for t in texts]
    if chat:
        texts += [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
                  for p in prompts]
    different = [t for t in texts if encode(t) != hf.encode(t, add_special_tokens=False)]
    ids_equal = all(value is None or fields.get(key) == value for key, value in (
        (gguf.Keys.Tokenizer.BOS_ID, hf.bos_token_id), (gguf.Keys.Tokenizer.EOS_ID, hf.eos_token_id)))
    template_equal = fields.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE) == getattr(tokenizer, "chat_template", None)
    equal = not different and ids_equal and template_equal
    vocabulary = {"equal": equal, "texts": len(texts),
                  "summary": (f"{len(texts)} texts encode to the same ids; special ids and chat "
                              "template equal" if equal else
                              f"{len(different)} of {len(texts)} texts encode differently"
                              f"{'' if ids_equal else ', special token ids differ'}"
                              f"{'' if template_equal else ', chat template differs'}")}
    if bare_note:
        vocabulary["note"] = bare_note
    if different:
        vocabulary["first_different_text"] = different[0]
    return {"tensors": tensors, "vocabulary": vocabulary}
