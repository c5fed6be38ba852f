"""Records of the usual dataset formats in three neutral shapes, and those shapes as mlx-lm
records.

Every source record becomes a conversation, a prompt/completion pair, or a text, and is then
written in the target format. No text is dropped on the way: an Alpaca row's instruction and
input both reach the prompt, its system and history reach the conversation, and a target that
cannot hold a structure (text, or completions for a multi-turn chat) gets the turns written out
with their roles.
"""

from __future__ import annotations

import json
import re
from typing import Optional, Sequence

from . import formats as F

# Neutral shapes: ("chat", messages, tools) / ("completions", prompt, completion, tools) /
# ("text", text). Tuples keep millions of rows cheap.
Example = tuple


_INST = re.compile(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|\Z)", re.S)
_SYS = re.compile(r"^\s*<<SYS>>(.*?)<</SYS>>", re.S)
_SPECIAL = re.compile(r"</?s>")


def is_mistral(text: str) -> bool:
    return "[INST]" in text and "[/INST]" in text


def parse_mistral(text: str) -> list:
    """``<s>[INST] q [/INST] a</s>[INST] q2 [/INST] a2</s>`` → messages (with a Llama-2
    ``<<SYS>>`` block as the system message). Raises ValueError for text outside the turns."""
    first = text.find("[INST]")
    if _SPECIAL.sub("", text[:first]).strip():
        raise ValueError("text before the first [INST] would be lost")
    messages = []
    for i, m in enumerate(_INST.finditer(text)):
        user, answer = m.group(1), _SPECIAL.sub("", m.group(2)).strip()
        if i == 0:
            sys_match = _SYS.match(user)
            if sys_match:
                messages.append({"role": "system", "content": sys_match.group(1).strip()})
                user = user[sys_match.end():]
        messages.append({"role": "user", "content": _SPECIAL.sub("", user).strip()})
        if answer:
            messages.append({"role": "assistant", "content": answer})
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no answer after [/INST]: nothing to train on")
    return messages


def _tools(value):
    """LLaMA-Factory stores tools as a JSON string; chat templates want a list."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, list) else [value]


def _chosen_example(rec: dict, fmt: str) -> Optional[Example]:
    """Preference and KTO data as supervised data: the chosen answer after its prompt; None
    for a KTO example labelled false (an answer not to learn)."""
    if fmt == F.KTO:
        if rec["label"] is not True:
            return None
        body = {k: v for k, v in rec.items() if k != "label"}
        return to_example(body, F.record_format(body))
    prompt, chosen = rec.get("prompt"), rec["chosen"]
    if type(prompt) is str and type(chosen) is str:
        return ("completions", prompt, chosen, _tools(rec.get("tools")))
    before = F.preference_prompt(rec)
    if before is None:  # check_record reports it; a record passed unchecked lands here
        raise ValueError("no prompt before the chosen answer")
    messages = before + [{"role": "assistant", "content": F.answer_text(chosen)}]
    return ("chat", messages, _tools(rec.get("tools")))


def feedback_message(fmt: str) -> str:
    what = "preference data (chosen/rejected)" if fmt == F.PREFERENCE else \
        "KTO data (true/false labels)"
    return f"{what} is not supervised data; pass --keep chosen to keep the chosen answers"


def to_example(rec: dict, fmt: Optional[str], keep: Optional[str] = None) -> Optional[Example]:
    """A valid record (checked with formats.check_record) in its neutral shape; None for a
    record ``keep`` leaves out. Raises ValueError with a user-facing message when it cannot
    be converted."""
    if fmt in F.FEEDBACK_FORMATS:
        if keep != "chosen":
            raise ValueError(feedback_message(fmt))
        return _chosen_example(rec, fmt)
    if fmt == F.COMPLETIONS:
        return ("completions", rec["prompt"], rec["completion"], _tools(rec.get("tools")))
    if fmt == F.CHAT:
        return ("chat", rec["messages"], _tools(rec.get("tools")))
    if fmt == F.CONVERSATIONS:
        return ("chat", rec["conversations"], _tools(rec.get("tools")))
    if fmt == F.TEXT:
        text = rec["text"]
        return ("chat", parse_mistral(text), None) if is_mistral(text) else ("text", text)
    if fmt == F.ALPACA:
        messages = []
        if rec.get("system"):
            messages.append({"role": "system", "content": rec["system"]})
        for question, answer in rec.get("history") or ():
            messages += [{"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]
        instruction, extra = rec.get("instruction") or "", rec.get("input") or ""
        prompt = f"{instruction}\n\n{extra}" if instruction.strip() and extra.strip() \
            else (instruction if instruction.strip() else extra)
        messages += [{"role": "user", "content": prompt},
                     {"role": "assistant", "content": rec["output"]}]
        return ("chat", messages, _tools(rec.get("tools")))
    if fmt == F.SHAREGPT:
        messages = []
        if rec.get("system"):
            messages.append({"role": "system", "content": rec["system"]})
        for turn in rec["conversations"]:
            messages.append({"role": F.SHAREGPT_ROLES[turn["from"]], "content": turn["value"]})
        return ("chat", messages, _tools(rec.get("tools")))
    raise ValueError(f"cannot convert {F.describe(fmt)} records")


def _content(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if content is None and message.get("tool_calls"):
        return json.dumps(message["tool_calls"], ensure_ascii=False)
    return json.dumps(content, ensure_ascii=False)


def _labelled(messages: Sequence[dict]) -> str:
    return "\n\n".join(f"{str(m.get('role', '')).capitalize()}: {_content(m)}" for m in messages)


def render(example: Example, target: str) -> dict:
    """A neutral example as an mlx-lm record of ``target``; ValueError if it cannot be one."""
    kind = example[0]
    if target == F.CHAT:
        if kind == "chat":
            rec = {"messages": example[1]}
            tools = example[2]
        elif kind == "completions":
            rec = {"messages": [{"role": "user", "content": example[1]},
                                {"role": "assistant", "content": example[2]}]}
            tools = example[3]
        else:
            raise ValueError("plain text has no assistant turn, so it cannot become chat "
                             "(use --to text)")
        if tools:
            rec["tools"] = tools
        return rec
    if target == F.COMPLETIONS:
        if kind == "completions":
            rec = {"prompt": example[1], "completion": example[2]}
            tools = example[3]
        elif kind == "chat":
            messages, tools = example[1], example[2]
            last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"),
                       default=None)
            if last is None:
                raise ValueError("no assistant turn to use as the completion")
            if last != len(messages) - 1:
                raise ValueError("the conversation goes on after its last assistant turn; "
                                 "completions would lose it (use --to chat)")
            before = messages[:last]
            prompt = _content(before[0]) if len(before) == 1 else _labelled(before)
            rec = {"prompt": prompt, "completion": _content(messages[last])}
        else:
            raise ValueError("plain text has no completion (use --to text)")
        if tools:
            rec["tools"] = tools
        return rec
    if kind == "text":
        return {"text": example[1]}
    if kind == "completions":
        return {"text": f"{example[1]}\n\n{example[2]}"}
    return {"text": _labelled(example[1])}
