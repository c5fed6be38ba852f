"""The prompts to answer: read from a .txt or JSONL file, each keyed by a hash of its
conversation so that a re-run knows which ones are answered already.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import BadInput


def prompt_key(messages: Sequence[dict]) -> str:
    """The hash that says a prompt was answered: the conversation before the answer."""
    text = json.dumps(list(messages), ensure_ascii=False, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Prompt:
    line: int               # in the prompts file
    messages: tuple         # the conversation to answer (system first when given)

    @property
    def key(self) -> str:
        return prompt_key(self.messages)

    @property
    def text(self) -> str:
        return " ".join(m.get("content") or "" for m in self.messages if m.get("role") == "user")


def read_prompts(path: Path, system: Optional[str] = None) -> List[Prompt]:
    """Prompts from a .txt file (one a line) or JSONL (``prompt`` or ``messages``). Bad lines
    are BadInput as ``FILE:LINE: message``."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    head = [{"role": "system", "content": system}] if system else []
    prompts = []
    with open(path, encoding="utf-8-sig", errors="strict") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError as exc:
            raise BadInput(f"{path}: invalid UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        if not jsonl:
            prompts.append(Prompt(number, tuple(head + [{"role": "user",
                                                          "content": text.strip()}])))
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        prompts.append(Prompt(number, tuple(head + _conversation(rec, f"{path}:{number}"))))
    if not prompts:
        raise BadInput(f"{path}: no prompts in it")
    return prompts


def _conversation(rec, where: str) -> list:
    if isinstance(rec, dict) and isinstance(rec.get("prompt"), str) and rec["prompt"].strip():
        return [{"role": "user", "content": rec["prompt"]}]
    if isinstance(rec, dict) and isinstance(rec.get("messages"), list) and rec["messages"]:
        messages = [m for m in rec["messages"] if isinstance(m, dict)]
        # An answer already there is what is to be generated again: the prompt ends before it.
        while messages and messages[-1].get("role") == "assistant":
            messages.pop()
        if messages and all(isinstance(m.get("content"), str) for m in messages):
            return [{"role": m["role"], "content": m["content"]} for m in messages]
    raise BadInput(f'{where}: expected a "prompt" string or a "messages" list ending in a '
                   "user turn")
