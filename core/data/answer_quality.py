"""What looks wrong with a generated answer, as the quality report names it: empty, cut at
max_tokens, in another script than its prompt, or a (near-)duplicate of an earlier answer.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Dict, List, Optional

from .model_sources import Reply

# Quality flags, as the report names them.
EMPTY = "empty answer"
CUT = "cut at max_tokens"
SCRIPT = "answer in another script than its prompt"
DUPLICATE = "duplicate answer"


def normalized(text: str) -> str:
    """Text as near-duplicate detection compares it: case, punctuation, numbering and spacing
    do not count."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", text)
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


def _script(ch: str) -> Optional[str]:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    word = name.split()[0]
    return {"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana"}.get(word, word)


def dominant_script(text: str) -> Optional[str]:
    """The script most letters of ``text`` are in (LATIN, CYRILLIC, Han...), or None when there
    are too few letters to tell."""
    counts: Dict[str, int] = {}
    letters = 0
    for ch in text:
        if ch.isalpha():
            script = _script(ch)
            if script:
                counts[script] = counts.get(script, 0) + 1
                letters += 1
    if letters < 8:
        return None
    script, n = max(counts.items(), key=lambda kv: kv[1])
    return script if n >= letters / 2 else None


def quality_flags(prompt: str, reply: Reply, seen: Dict[str, int], line: int) -> List[str]:
    """What looks wrong with an answer; ``seen`` maps normalized answers to their line."""
    flags = []
    answer = reply.text
    if not answer.strip():
        return [EMPTY]
    if reply.finish_reason == "length":
        flags.append(CUT)
    asked, answered = dominant_script(prompt), dominant_script(answer)
    if asked and answered and asked != answered:
        flags.append(f"{SCRIPT} ({answered.lower()} for {asked.lower()})")
    norm = normalized(answer)
    if norm in seen:
        flags.append(f"{DUPLICATE} (as line {seen[norm]})" if seen[norm] else DUPLICATE)
    else:
        seen[norm] = line
    return flags
