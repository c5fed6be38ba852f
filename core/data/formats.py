"""Record formats: which one a record is in, and what is wrong with it.

mlx-lm reads three formats and decides which from the first record of a file, in this order:
``prompt`` + ``completion`` (completions), then ``messages`` (chat, optionally with ``tools``),
then ``text``. The other formats here are the usual sources people convert from.

Detection is deliberately looser than mlx-lm's (a record with only ``prompt`` still counts as
completions) so that the problem reported is "missing completion", not "unknown record".
mlx-lm's key names can be changed (``prompt_feature``, ``completion_feature``, ``chat_feature``,
``text_feature``): ``FeatureKeys`` carries them, and detection and checks read the user's columns.
Preference data (``chosen``/``rejected``, for DPO-style training) and KTO data (a true/false
``label``) are named as such: they are not supervised data, and "missing completion" on every
line would hide what they are.
The checks run on every line of multi-gigabyte files, so they are written for speed: exact type
tests, no helper calls per message, and ``None`` (no allocation) for a good record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

COMPLETIONS = "completions"
CHAT = "chat"
TEXT = "text"
ALPACA = "alpaca"
SHAREGPT = "sharegpt"
CONVERSATIONS = "conversations"
PREFERENCE = "preference"
KTO = "kto"

MLX_FORMATS = (COMPLETIONS, CHAT, TEXT)
# Not supervised data: mlx_lm.lora would train on them wrongly or not at all.
FEEDBACK_FORMATS = (PREFERENCE, KTO)

_KEYS = {
    COMPLETIONS: "prompt/completion",
    CHAT: "messages",
    TEXT: "text",
    ALPACA: "instruction/input/output",
    SHAREGPT: "conversations with from/value",
    CONVERSATIONS: "conversations with role/content",
    PREFERENCE: "chosen/rejected",
    KTO: "examples with a true/false label",
}

# The names mlx-lm's options use, and the user's: prompt_feature → "prompt", and so on.
FEATURES = ("prompt", "completion", "chat", "text")


@dataclass(frozen=True)
class FeatureKeys:
    """The record keys mlx-lm reads (its ``*_feature`` options); mlx-lm's defaults here."""

    prompt: str = "prompt"
    completion: str = "completion"
    chat: str = "messages"
    text: str = "text"

    @classmethod
    def of(cls, features: Optional[Mapping[str, Optional[str]]]) -> "FeatureKeys":
        """From {"prompt": column, ...}; names left out or empty keep mlx-lm's default."""
        if not features:
            return DEFAULT_KEYS
        unknown = sorted(set(features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature {unknown[0]!r} (expected one of "
                             f"{', '.join(FEATURES)})")
        keys = cls(**{name: column for name, column in features.items() if column})
        return DEFAULT_KEYS if keys == DEFAULT_KEYS else keys

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_KEYS

    def as_dict(self) -> Dict[str, str]:
        return asdict(self)

    def standard(self, rec: dict, fmt: Optional[str]) -> dict:
        """The record under mlx-lm's default key names, for code that reads those."""
        if self.is_default:
            return rec
        names = {COMPLETIONS: (("prompt", self.prompt), ("completion", self.completion)),
                 CHAT: (("messages", self.chat),), TEXT: (("text", self.text),)}.get(fmt or "", ())
        out = {k: v for k, v in rec.items() if k not in {std for std, _ in names}}
        for std, column in names:
            if column in rec:
                out.pop(column, None)
                out[std] = rec[column]
        return out


DEFAULT_KEYS = FeatureKeys()

CHAT_ROLES = frozenset(("system", "user", "assistant", "tool", "developer"))
SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "function_call": "assistant",
    "system": "system",
    "observation": "tool", "tool": "tool", "function": "tool",
}

# (is_error, message). A list only exists when something is wrong.
Issue = Tuple[bool, str]


def describe(fmt: Optional[str], keys: Optional[FeatureKeys] = None) -> str:
    """``chat (messages)``: the name a user sees, with the keys that identify it."""
    if fmt is None:
        return "unknown"
    if keys is not None and not keys.is_default:
        shown = {COMPLETIONS: f"{keys.prompt}/{keys.completion}", CHAT: keys.chat,
                 TEXT: keys.text}.get(fmt, _KEYS[fmt])
        return f"{fmt} ({shown})"
    return f"{fmt} ({_KEYS[fmt]})"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "string", bool: "boolean", int: "number", float: "number",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)


def record_format(rec: Any, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[str]:
    """The format a record is written in, or None when it is in none of them."""
    if type(rec) is not dict:
        return None
    if "chosen" in rec and "rejected" in rec:
        return PREFERENCE
    if type(rec.get("label")) is bool:
        return KTO
    prompt, completion = keys.prompt, keys.completion
    if prompt in rec and completion in rec:
        return COMPLETIONS
    if keys.chat in rec:
        return CHAT
    if prompt in rec or completion in rec:
        return COMPLETIONS
    if keys.text in rec:
        return TEXT
    if "instruction" in rec or "output" in rec:
        return ALPACA
    if "conversations" in rec:
        turns = rec["conversations"]
        if type(turns) is list and turns and type(turns[0]) is dict and (
                "role" in turns[0] or "content" in turns[0]):
            return CONVERSATIONS
        return SHAREGPT
    return None


def unknown_record_message(rec: Any) -> str:
    if type(rec) is not dict:
        return f"a record must be a JSON object, got {_type_name(rec)}"
    names = ", ".join(sorted(rec)[:8]) or "none"
    return ("record in no known format (keys: " + names + "); expected prompt/completion, "
            "messages, text, instruction/output or conversations (other key names: set "
            "prompt_feature, completion_feature, chat_feature or text_feature)")


def check_record(rec: dict, fmt: str, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    """Problems of a record in format ``fmt`` (as returned by record_format), or None."""
    return _CHECKS[fmt](rec, keys)


def _string_field(rec: dict, key: str, issues: List[Issue], required: bool = True,
                  empty: Optional[bool] = True) -> None:
    """Check a string field; ``empty``: True reports an empty value as an error, False as a
    warning, None not at all."""
    if key not in rec:
        if required:
            issues.append((True, f'missing "{key}"'))
        return
    value = rec[key]
    if type(value) is not str:
        if value is None and not required:
            return
        issues.append((True, f'"{key}" must be a string, got {_type_name(value)}'))
    elif empty is not None and not value.strip():
        issues.append((empty, f'empty "{key}"'))


def _check_completions(rec: dict, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    prompt = rec.get(keys.prompt)
    completion = rec.get(keys.completion)
    if type(prompt) is str and type(completion) is str and completion.strip() and prompt.strip():
        tools = rec.get("tools")
        if tools is None or type(tools) is list:
            return None
    issues: List[Issue] = []
    # An empty prompt trains fine (the completion follows an empty user turn); say so softly.
    _string_field(rec, keys.prompt, issues, empty=False)
    _string_field(rec, keys.completion, issues)
    _check_tools(rec, issues)
    return issues or None


def _check_tools(rec: dict, issues: List[Issue]) -> None:
    tools = rec.get("tools")
    if tools is not None and type(tools) is not list:
        issues.append((True, '"tools" must be an array of tool definitions, '
                             f"got {_type_name(tools)}"))


def _check_messages(turns: Any, key: str, issues: List[Issue]) -> None:
    """The shared check of an OpenAI-style list of {role, content} messages."""
    if type(turns) is not list:
        issues.append((True, f'"{key}" must be an array of messages, got {_type_name(turns)}'))
        return
    if not turns:
        issues.append((True, f'"{key}" is empty'))
        return
    has_assistant = False
    for i, m in enumerate(turns, 1):
        if type(m) is not dict:
            issues.append((True, f"message {i} must be an object, got {_type_name(m)}"))
            continue
        role = m.get("role")
        content = m.get("content")
        if type(role) is str and type(content) is str and content and not content.isspace() \
                and role in CHAT_ROLES:
            if role == "assistant":
                has_assistant = True
            continue
        if role is None:
            if "from" in m and "value" in m:
                issues.append((True, f'message {i} has "from"/"value" (ShareGPT turns) instead '
                                     'of "role"/"content": convert the file with '
                                     "tunedeck data convert"))
                return
            issues.append((True, f'message {i} has no "role"'))
            continue
        if type(role) is not str:
            issues.append((True, f'message {i}: "role" must be a string, got {_type_name(role)}'))
            continue
        if role not in CHAT_ROLES:
            issues.append((False, f'message {i} has the unusual role "{role}"; '
                                  "chat templates may reject it"))
        calls = m.get("tool_calls")
        if role == "assistant":
            has_assistant = True
        if content is None:
            # An assistant turn that only calls tools has no content, by the OpenAI convention.
            if not (role == "assistant" and calls):
                issues.append((True, f'message {i} ({role}) has no "content"'))
        elif type(content) is list:
            issues.append((False, f"message {i} ({role}): content is a list of parts; "
                                  "text-only chat templates may render it literally"))
        elif type(content) is not str:
            issues.append((True, f'message {i} ({role}): "content" must be a string, '
                                 f"got {_type_name(content)}"))
        elif not content.strip() and not calls:
            issues.append((role == "assistant", f"message {i} ({role}) is empty"))
    if not has_assistant:
        issues.append((True, "no assistant message: nothing to train on"))


def _check_chat(rec: dict, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    # The common case first, with no allocation: every message a dict with a known role and
    # non-empty string content, at least one from the assistant, tools absent or a list.
    turns = rec[keys.chat]
    if type(turns) is list:
        has_assistant = False
        for m in turns:
            if type(m) is not dict:
                break
            content = m.get("content")
            if type(content) is not str or not content or content.isspace():
                break
            role = m.get("role")
            if role == "assistant":
                has_assistant = True
            elif role not in CHAT_ROLES:
                break
        else:
            tools = rec.get("tools")
            if has_assistant and (tools is None or type(tools) is list):
                return None
    issues: List[Issue] = []
    _check_messages(turns, keys.chat, issues)
    _check_tools(rec, issues)
    return issues or None


def _check_conversations(rec: dict, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    issues: List[Issue] = []
    _check_messages(rec["conversations"], "conversations", issues)
    return issues or None


def _check_text(rec: dict, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    text = rec[keys.text]
    if type(text) is str and text.strip():
        return None
    issues: List[Issue] = []
    # mlx-lm fails on an empty text (it indexes the last token of an empty list), hence an error.
    _string_field(rec, keys.text, issues)
    return issues


def _check_alpaca(rec: dict, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    issues: List[Issue] = []
    # An empty instruction is fine when the input carries the request; an empty input or
    # system is the norm in Alpaca data.
    _string_field(rec, "instruction", issues, empty=None)
    _string_field(rec, "input", issues, required=False, empty=None)
    _string_field(rec, "output", issues)
    _string_field(rec, "system", issues, required=False, empty=None)
    instruction, inp = rec.get("instruction"), rec.get("input")
    if type(instruction) is str and not instruction.strip() and not (
            type(inp) is str and inp.strip()):
        issues.append((True, 'empty "instruction" and "input"'))
    history = rec.get("history")
    if history is not None:
        if type(history) is not list:
            issues.append((True, f'"history" must be an array of [instruction, response] pairs, '
                                 f"got {_type_name(history)}"))
        else:
            for i, pair in enumerate(history, 1):
                if not (type(pair) in (list, tuple) and len(pair) == 2
                        and all(type(x) is str for x in pair)):
                    issues.append((True, f'"history" item {i} must be a pair of strings '
                                         "[instruction, response]"))
    return issues or None


def _check_sharegpt(rec: dict, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    issues: List[Issue] = []
    turns = rec["conversations"]
    if type(turns) is not list:
        issues.append((True, f'"conversations" must be an array of turns, got {_type_name(turns)}'))
        return issues
    if not turns:
        issues.append((True, '"conversations" is empty'))
        return issues
    has_assistant = False
    for i, t in enumerate(turns, 1):
        if type(t) is not dict:
            issues.append((True, f"turn {i} must be an object, got {_type_name(t)}"))
            continue
        who, value = t.get("from"), t.get("value")
        if who is None:
            issues.append((True, f'turn {i} has no "from"'))
            continue
        role = SHAREGPT_ROLES.get(who) if type(who) is str else None
        if role is None:
            issues.append((True, f'turn {i}: unknown "from": {who!r} (expected human, gpt, '
                                 "system, function_call or observation)"))
            continue
        if role == "assistant":
            has_assistant = True
        if value is None and "value" not in t:
            issues.append((True, f'turn {i} ({who}) has no "value"'))
        elif type(value) is not str:
            issues.append((True, f'turn {i} ({who}): "value" must be a string, '
                                 f"got {_type_name(value)}"))
        elif not value.strip():
            issues.append((role == "assistant", f"turn {i} ({who}) is empty"))
    if not has_assistant:
        issues.append((True, 'no assistant turn ("from": "gpt"): nothing to train on'))
    _string_field(rec, "system", issues, required=False, empty=None)
    tools = rec.get("tools")
    if tools is not None and type(tools) not in (str, list):
        issues.append((True, f'"tools" must be a JSON string or an array, got {_type_name(tools)}'))
    return issues or None


def answer_text(value: Any) -> Optional[str]:
    """The text of a preference answer: a string, one message ({role, content} or ShareGPT's
    {from, value}), or a conversation whose last message is the answer; None when it is none
    of these or empty."""
    if type(value) is list and value:
        value = value[-1]
    if type(value) is dict:
        value = value.get("content", value.get("value"))
    return value if type(value) is str and value.strip() else None


def preference_prompt(rec: dict) -> Optional[list]:
    """The conversation before the answers: ``prompt`` (a string or messages), LLaMA-Factory's
    ``conversations`` / ``messages``, or the turns before the last in a full ``chosen``
    conversation (the Hugging Face convention); None when there is none."""
    for key in ("prompt", "conversations", "messages"):
        value = rec.get(key)
        if type(value) is str and value.strip():
            return [{"role": "user", "content": value}]
        if type(value) is list and value:
            return [_as_message(m) for m in value]
    chosen = rec.get("chosen")
    if type(chosen) is list and len(chosen) > 1:
        return [_as_message(m) for m in chosen[:-1]]
    return None


def _as_message(m: Any) -> dict:
    if type(m) is dict and "from" in m and "role" not in m:
        return {"role": SHAREGPT_ROLES.get(m["from"], m["from"]), "content": m.get("value")}
    return m


def _check_preference(rec: dict, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    issues: List[Issue] = []
    for key in ("chosen", "rejected"):
        if answer_text(rec[key]) is None:
            issues.append((True, f'"{key}" holds no answer text (expected a string, a message '
                                 "or a conversation ending in one)"))
    if preference_prompt(rec) is None:
        issues.append((True, 'no prompt ("prompt", "conversations" or "messages")'))
    return issues or None


def _check_kto(rec: dict, keys: FeatureKeys = DEFAULT_KEYS) -> Optional[List[Issue]]:
    body = {k: v for k, v in rec.items() if k != "label"}
    fmt = record_format(body, keys)
    if fmt is None or fmt in FEEDBACK_FORMATS:
        return [(True, "a KTO label with no example to label (expected messages, "
                       "conversations or prompt/completion beside it)")]
    return _CHECKS[fmt](body, keys)


_CHECKS = {
    PREFERENCE: _check_preference,
    KTO: _check_kto,
    COMPLETIONS: _check_completions,
    CHAT: _check_chat,
    TEXT: _check_text,
    ALPACA: _check_alpaca,
    SHAREGPT: _check_sharegpt,
    CONVERSATIONS: _check_conversations,
}
