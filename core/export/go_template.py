"""Rendering the part of Go's text/template that Ollama TEMPLATEs use, to prove one renders the
same prompt as the model's own chat template.

Supported: text, ``{{- … -}}`` whitespace trimming, ``.Field``, ``$.Field``, ``$var``, ``$var.Field``,
string literals, ``if`` / ``else if`` / ``else``, ``range PIPE`` and ``range $i, $m := PIPE``,
and the functions ``eq``, ``ne``, ``and``, ``or``, ``not``, ``len``. Anything else is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.DOTALL)
_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|\(|\)|[^\s()]+')


class TemplateError(ValueError):
    pass


@dataclass
class _Node:
    kind: str                      # text, value, if, range
    text: str = ""
    branches: list = field(default_factory=list)   # if: [(condition, body)]; range: [(expr, body)]
    otherwise: list = field(default_factory=list)
    names: list = field(default_factory=list)      # range's $i, $m


def _lex(source: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if parts and parts[-1][0] == "trim-next":
            parts.pop()
            text = text.lstrip()
        parts.append(("text", text))
        parts.append(("action", m.group(2)))
        if m.group(3):
            parts.append(("trim-next", ""))
        pos = m.end()
    tail = source[pos:]
    if parts and parts[-1][0] == "trim-next":
        parts.pop()
        tail = tail.lstrip()
    parts.append(("text", tail))
    return parts


def _parse(parts: list, i: int, closers: tuple) -> tuple[list, int, str]:
    body: list = []
    while i < len(parts):
        kind, text = parts[i]
        i += 1
        if kind == "text":
            if text:
                body.append(_Node("text", text))
            continue
        head, _, rest = text.partition(" ")
        if head in closers or (head == "else" and "else" in closers):
            return body, i, text
        if head == "if":
            node = _Node("if")
            condition = rest
            while True:
                branch, i, closer = _parse(parts, i, ("end", "else"))
                node.branches.append((condition, branch))
                if closer == "end":
                    break
                if closer.startswith("else if "):
                    condition = closer[len("else if "):]
                    continue
                node.otherwise, i, _ = _parse(parts, i, ("end",))
                break
            body.append(node)
        elif head == "range":
            names, expr = [], rest
            if ":=" in rest:
                left, expr = rest.split(":=", 1)
                names = [n.strip() for n in left.split(",")]
            inner, i, closer = _parse(parts, i, ("end", "else"))
            node = _Node("range", branches=[(expr.strip(), inner)], names=names)
            if closer != "end":
                node.otherwise, i, _ = _parse(parts, i, ("end",))
            body.append(node)
        elif head in ("end", "else"):
            raise TemplateError(f"unexpected {{{{ {text} }}}}")
        else:
            body.append(_Node("value", text))
    if closers:
        raise TemplateError("missing {{ end }}")
    return body, i, ""


def _truthy(value) -> bool:
    return bool(value)


_FUNCS: dict[str, Callable[..., Any]] = {
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truthy(a),
    "len": lambda a: len(a),
}


def _lookup(value, path: list[str]):
    for name in path:
        if isinstance(value, dict) and name in value:
            value = value[name]
        else:
            raise TemplateError(f"no field {name}")
    return value


def _evaluate(words: list[str], dot, scope: dict):
    if not words:
        raise TemplateError("empty expression")
    head = words[0]
    if head in _FUNCS or head in ("and", "or"):
        args = _arguments(words[1:], dot, scope)
        if head == "and":
            return next((a for a in args if not _truthy(a)), args[-1])
        if head == "or":
            return next((a for a in args if _truthy(a)), args[-1])
        return _FUNCS[head](*args)
    if len(words) != 1:
        raise TemplateError(f"cannot evaluate {' '.join(words)!r}")
    return _operand(head, dot, scope)


def _arguments(words: list[str], dot, scope: dict) -> list:
    args, i = [], 0
    while i < len(words):
        if words[i] == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(words[j], 0)
                j += 1
            args.append(_evaluate(words[i + 1:j - 1], dot, scope))
            i = j
        else:
            args.append(_operand(words[i], dot, scope))
            i += 1
    return args


def _operand(word: str, dot, scope: dict):
    if word.startswith('"'):
        return bytes(word[1:-1], "utf-8").decode("unicode_escape")
    if word == ".":
        return dot
    if word.startswith("."):
        return _lookup(dot, word[1:].split("."))
    if word.startswith("$"):
        name, _, rest = word.partition(".")
        if name not in scope:
            raise TemplateError(f"undefined variable {name}")
        return _lookup(scope[name], rest.split(".")) if rest else scope[name]
    raise TemplateError(f"cannot evaluate {word!r}")


def _render(nodes: list, dot, scope: dict, out: list) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "value":
            value = _evaluate(_WORD.findall(node.text), dot, scope)
            out.append("" if value is None else str(value))
        elif node.kind == "if":
            for condition, body in node.branches:
                if _truthy(_evaluate(_WORD.findall(condition), dot, scope)):
                    _render(body, dot, scope, out)
                    break
            else:
                _render(node.otherwise, dot, scope, out)
        elif node.kind == "range":
            expr, body = node.branches[0]
            items = _evaluate(_WORD.findall(expr), dot, scope)
            if not items:
                _render(node.otherwise, dot, scope, out)
            for index, item in enumerate(items or []):
                inner = dict(scope)
                if len(node.names) == 2:
                    inner[node.names[0]], inner[node.names[1]] = index, item
                elif node.names:
                    inner[node.names[0]] = item
                _render(body, item, inner, out)


def render(template: str, data: dict) -> str:
    nodes, _, _ = _parse(_lex(template), 0, ())
    out: list[str] = []
    _render(nodes, data, {"$": data}, out)
    return "".join(out)


def ollama_data(messages: list[dict], system: str | None = None) -> dict:
    """What Ollama hands a TEMPLATE: the messages (a SYSTEM first, when set) and ``.System``."""
    msgs = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    if system and not any(m["Role"] == "system" for m in msgs):
        msgs.insert(0, {"Role": "system", "Content": system})
    first_system = next((m["Content"] for m in msgs if m["Role"] == "system"), "")
    return {"Messages": msgs, "System": first_system}
