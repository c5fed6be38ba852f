"""SentencePiece vocabularies (Llama 2, Mistral: a ``tokenizer.model``) in GGUF, as llama.cpp reads them.

llama.cpp's ``llama`` tokenizer knows pieces, scores and token types only. It cuts the text at
special tokens (control, user-defined and unknown ones, longest first), puts a space before each
stretch of text that follows a special token or starts the text when ``add_space_prefix`` is set,
writes spaces as ``▁``, then merges neighbouring pieces by the score of what they form, highest
first; what no piece covers is written as ``<0xNN>`` byte tokens.

The model's own tokenizer (transformers') decides about the leading ``▁`` by its ``legacy``
setting: either before every stretch of text, as llama.cpp does with the prefix on, or only at the
very start of the input. llama.cpp has one switch for both places, so it is set the way the model
treats text after a special token, which is where chat prompts put every word; a text outside any
chat turn may then split differently at its first word, and the check says so.

``LlamaCppSentencePiece`` is that reading done in Python from the file's own fields, so the export
is checked even where llama.cpp is not installed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import BadInput

SPACE = "\u2581"
# The SentencePiece piece types are GGUF's token types, number for number.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_BPE = 2  # TrainerSpec.model_type
# Rows of the embedding that no token names: llama.cpp wants a token per row.
_PAD_SCORE = -1000.0


def sentencepiece_model(model_dir: Path):
    """The model's ``tokenizer.model`` as a SentencePiece ModelProto, or None when there is none."""
    path = Path(model_dir) / "tokenizer.model"
    if not path.is_file():
        return None
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    # protobuf builds the message classes when the module loads; its stub cannot list them.
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    try:
        proto.ParseFromString(path.read_bytes())
    except DecodeError:
        return None  # not SentencePiece (Llama 3 ships a tiktoken file under this name)
    return proto if len(proto.pieces) else None


def check_sentencepiece(path: Path, proto) -> None:
    """Refuse what llama.cpp's ``llama`` tokenizer would read differently, before any work."""
    if proto.trainer_spec.model_type != _BPE:
        kind = type(proto.trainer_spec).ModelType.Name(proto.trainer_spec.model_type).lower()
        raise BadInput(f"{path}: a SentencePiece {kind} model; llama.cpp merges pieces by score, which "
                       "only a SentencePiece BPE model is made for")
    if not any(piece.type == BYTE for piece in proto.pieces):
        raise BadInput(f"{path}: a SentencePiece model without byte pieces; llama.cpp cannot write a "
                       "character outside the vocabulary without them")


@dataclass
class SentencePieceVocabulary:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    add_space_prefix: bool


def sentencepiece_vocabulary(proto, tokenizer, n_vocab: int) -> SentencePieceVocabulary:
    """Pieces, scores and types from the SentencePiece model; tokens the model's tokenizer added
    on top (or redefined) from its added-tokens table; placeholders for unnamed embedding rows."""
    tokens = [p.piece for p in proto.pieces]
    scores = [float(p.score) for p in proto.pieces]
    types = [int(p.type) for p in proto.pieces]
    added = tokenizer._tokenizer.added_tokens_decoder
    size = max([n_vocab, len(tokens), *(i + 1 for i in added)])
    tokens += [f"[PAD{i}]" for i in range(len(tokens), size)]
    scores += [_PAD_SCORE] * (size - len(scores))
    types += [UNUSED] * (size - len(types))
    for i, token in added.items():
        kind = CONTROL if token.special else USER_DEFINED
        if tokens[i] != token.content or types[i] in (NORMAL, UNUSED):
            # A token of the model's own (a chat marker), not the SentencePiece model's.
            tokens[i], scores[i], types[i] = token.content, _PAD_SCORE, kind
    return SentencePieceVocabulary(tokens, scores, types, space_prefix(tokenizer, proto))


def space_prefix(tokenizer, proto) -> bool:
    """Whether the model's tokenizer puts ``▁`` before a text: after a special token when it has a
    chat template (every chat prompt is text between special tokens), else at the start."""
    hf = tokenizer._tokenizer
    marker = hf.eos_token or hf.bos_token
    if marker is None:
        return bool(proto.normalizer_spec.add_dummy_prefix)
    chat = bool(getattr(tokenizer, "chat_template", None))
    ids = hf.encode(f"{marker}a" if chat else "a", add_special_tokens=False)
    word = ids[1] if chat and len(ids) > 1 else ids[0]
    return hf.convert_ids_to_tokens(word).startswith(SPACE)


class LlamaCppSentencePiece:
    """Text to ids the way llama.cpp's ``llama`` tokenizer does it, from a GGUF file's fields."""

    def __init__(self, tokens: list[str], scores: list[float], types: list[int], add_space_prefix: bool,
                 unknown: Optional[int]):
        self.tokens, self.scores, self.add_space_prefix = tokens, scores, add_space_prefix
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.unknown = unknown
        specials = [i for i, kind in enumerate(types) if kind in (CONTROL, USER_DEFINED, UNKNOWN) and tokens[i]]
        self.specials = sorted(specials, key=lambda i: len(tokens[i].encode()), reverse=True)
        self.bytes = {int(tokens[i][3:5], 16): i for i, kind in enumerate(types) if kind == BYTE}

    def encode(self, text: str) -> list[int]:
        fragments: list = [text]
        for special in self.specials:
            piece, cut = self.tokens[special], []
            for fragment in fragments:
                if isinstance(fragment, int):
                    cut.append(fragment)
                    continue
                for n, part in enumerate(fragment.split(piece)):
                    if n:
                        cut.append(special)
                    if part:
                        cut.append(part)
            fragments = cut
        ids, after_special = [], True
        for fragment in fragments:
            if isinstance(fragment, int):
                ids.append(fragment)
                after_special = True
                continue
            prefix = " " if self.add_space_prefix and after_special else ""
            ids += self._merged((prefix + fragment).replace(" ", SPACE))
            after_special = False
        return ids

    def _merged(self, text: str) -> list[int]:
        count = len(text)
        length = [1] * count
        before = list(range(-1, count - 1))
        after = [i + 1 if i + 1 < count else -1 for i in range(count)]
        queue: list = []

        def offer(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            joined = text[left:left + length[left] + length[right]]
            token = self.ids.get(joined)
            if token is not None:
                # Highest score first; of equal scores, the leftmost pair.
                heapq.heappush(queue, (-self.scores[token], left, right, len(joined)))

        for i in range(1, count):
            offer(i - 1, i)
        while queue:
            _, left, right, size = heapq.heappop(queue)
            if not length[left] or not length[right] or length[left] + length[right] != size:
                continue  # one side was merged into something else since
            length[left] += length[right]
            length[right] = 0
            after[left] = after[right]
            if after[right] >= 0:
                before[after[right]] = left
            offer(before[left], left)
            offer(left, after[left])
        ids: list[int] = []
        i = 0 if count else -1
        while i != -1:
            symbol = text[i:i + length[i]]
            token = self.ids.get(symbol)
            if token is not None:
                ids.append(token)
            else:
                for b in symbol.encode("utf-8"):
                    byte = self.bytes.get(b, self.unknown)
                    if byte is None:  # llama.cpp refuses such a vocabulary too
                        raise ValueError(f"no token for byte {b:#04x} and no unknown token")
                    ids.append(byte)
            i = after[i]
        return ids
