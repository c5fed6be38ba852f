"""Rows from a plain-text document: one per line, per paragraph, per sentence, or windows of
tokens."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

from ..errors import BadInput
from .sources import BOM

TXT_MODES = ("line", "paragraph", "sentence", "chunk")

_SENTENCE = re.compile(
    r"\S.*?(?:[.!?…]+[\"'”’»)\]]*(?=\s|\Z)|[。！？]+[\"'”’」』)\]]*|\Z)", re.S)


def split_text(text: str, mode: str, tokenizer=None, chunk_tokens: int = 512,
               overlap: int = 0) -> List[str]:
    """Rows from a plain-text document; blank lines never make rows."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if mode == "line":
        return [line.strip() for line in text.split("\n") if line.strip()]
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
    if mode == "paragraph":
        return paragraphs
    if mode == "sentence":
        rows: list[str] = []
        for p in paragraphs:
            # A sentence wrapped over several lines is one sentence.
            flat = re.sub(r"\s*\n\s*", " ", p)
            rows.extend(m.group(0).strip() for m in _SENTENCE.finditer(flat))
        return [r for r in rows if r]
    if mode == "chunk":
        return chunk_by_tokens(text, tokenizer, chunk_tokens, overlap)
    raise BadInput(f"unknown --txt-mode {mode!r} (choose from {', '.join(TXT_MODES)})")


def chunk_by_tokens(text: str, tokenizer, chunk_tokens: int, overlap: int) -> List[str]:
    """Windows of ``chunk_tokens`` tokens, each starting ``chunk_tokens - overlap`` tokens after
    the previous one, cut from the original text (so nothing is re-spelled by decoding)."""
    if tokenizer is None:
        raise BadInput("--txt-mode chunk counts tokens: pass --model")
    if chunk_tokens < 1:
        raise BadInput("--chunk-tokens must be at least 1")
    if not 0 <= overlap < chunk_tokens:
        raise BadInput("--overlap must be at least 0 and less than --chunk-tokens")
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    if getattr(hf, "is_fast", False):
        enc = hf(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, spans = enc["input_ids"], enc["offset_mapping"]

        def piece(i: int, j: int) -> str:
            return text[spans[i][0]:spans[j - 1][1]]
    else:
        ids = hf.encode(text, add_special_tokens=False)

        def piece(i: int, j: int) -> str:
            return hf.decode(ids[i:j])
    rows, step = [], chunk_tokens - overlap
    for i in range(0, len(ids), step):
        j = min(i + chunk_tokens, len(ids))
        chunk = piece(i, j).strip()
        if chunk:
            rows.append(chunk)
        if j == len(ids):
            break
    return rows


def read_txt(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BadInput(f"{path}:{line}: invalid UTF-8 (byte 0x{data[exc.start]:02x}); "
                       "save the file as UTF-8") from None
