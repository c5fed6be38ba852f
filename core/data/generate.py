"""Make training data with a model: questions on a topic, then an answer to each prompt.

Two sources answer: a local MLX model loaded in this process (batched through mlx-lm's own
``BatchGenerator``, the machinery behind ``batch_generate``), or any OpenAI-compatible server
(Ollama's ``/v1``, LM Studio, vLLM, ``mlx_lm.server``) over plain HTTP, several requests at once.

Generation runs for hours on a laptop, so the output is built to survive anything: every row is
one complete JSON line, appended and fsynced per batch; a re-run of the same command skips the
prompts already answered (keyed by a hash of the prompt) and repairs a line a hard kill cut
short, so a SIGKILL loses at most the answers in flight and never leaves a half line or a
duplicate. Inputs are only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import BadInput, WorkFailed
from ..progress import Progress
from .validate import SPLIT_NAMES, Problem

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

DEFAULT_BATCH = 8
DEFAULT_TIMEOUT_S = 300.0       # a CPU server can take minutes over one long answer
DEFAULT_RETRIES = 3
BACKOFF_S = 0.5                 # first retry after this, doubling
QUESTIONS_PER_REQUEST = 10

QUESTIONS_PROMPT = ("Write {n} different questions that someone might ask about {topic}. "
                    "Write one question per line, with no numbering and nothing else.")

# Quality flags, as the report names them.
EMPTY = "empty answer"
CUT = "cut at max_tokens"
SCRIPT = "answer in another script than its prompt"
DUPLICATE = "duplicate answer"


@dataclass(frozen=True)
class Reply:
    text: str = ""
    finish_reason: Optional[str] = None    # "stop", "length", or None when it failed
    error: Optional[str] = None


class Stopped(Exception):
    """Generation was asked to stop; the answers in flight are dropped."""


# ---------------------------------------------------------------------------------------------
# Sources

class LocalModel:
    """A local MLX model (and adapter), answering a batch of conversations at once."""

    def __init__(self, model: str, adapter: Optional[str] = None, batch_size: int = DEFAULT_BATCH,
                 progress: Optional[Progress] = None):
        from ..chat import ChatModel
        from ..models import resolve_model

        if batch_size < 1:
            raise BadInput("--batch-size must be at least 1")
        self.batch_size = batch_size
        self.name = str(model)
        self.chat = ChatModel(resolve_model(str(model), progress=progress), adapter,
                              progress=progress)

    def complete(self, conversations: Sequence[list], max_tokens: int, temp: float,
                 seed: Optional[int], cancel: Optional[threading.Event] = None) -> List[Reply]:
        import mlx.core as mx
        from mlx_lm.generate import BatchGenerator
        from mlx_lm.sample_utils import make_sampler

        if seed is not None:
            mx.random.seed(seed)
        tokenizer = self.chat.tokenizer
        n = len(conversations)
        gen = BatchGenerator(self.chat.model,
                             stop_tokens=[[t] for t in tokenizer.eos_token_ids],
                             sampler=make_sampler(temp=temp), completion_batch_size=n,
                             prefill_batch_size=n)
        try:
            uids = gen.insert([self.chat.prompt_tokens(c) for c in conversations],
                              [max_tokens] * n)
            tokens: Dict[int, list] = {uid: [] for uid in uids}
            finish: Dict[int, str] = {}
            while responses := gen.next_generated():
                if cancel is not None and cancel.is_set():
                    raise Stopped
                for r in responses:
                    if r.finish_reason != "stop":
                        tokens[r.uid].append(r.token)
                    if r.finish_reason is not None:
                        finish[r.uid] = r.finish_reason
        finally:
            gen.close()
        return [Reply(tokenizer.decode(tokens[uid]), finish.get(uid, "length")) for uid in uids]

    def close(self) -> None:
        """The model is freed with this object; nothing to stop."""


class Endpoint:
    """An OpenAI-compatible server: ``URL/chat/completions``, ``concurrency`` requests at once.

    A request that fails is retried with backoff; one that keeps failing comes back as a Reply
    with its error. The first batch is the check that the server answers at all: if every
    request in it fails, WorkFailed says why in one line.
    """

    def __init__(self, url: str, model: Optional[str] = None, api_key: Optional[str] = None,
                 concurrency: int = 1, timeout: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES):
        self.url = completions_url(url)
        self.name = url
        self.model = model or "default_model"
        self.api_key = api_key
        if concurrency < 1:
            raise BadInput("--concurrency must be at least 1")
        self.batch_size = self.concurrency = concurrency
        self.timeout = timeout
        self.retries = max(1, retries)
        self.answered = False
        self._pool: Optional[ThreadPoolExecutor] = None  # made on the first request

    def complete(self, conversations: Sequence[list], max_tokens: int, temp: float,
                 seed: Optional[int], cancel: Optional[threading.Event] = None) -> List[Reply]:
        """(``cancel`` is looked at between batches: requests in flight are let finish.)"""
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="endpoint")
        seeds = [None if seed is None else seed + i for i in range(len(conversations))]
        replies = list(self._pool.map(lambda messages, each_seed: self._one(messages, each_seed, max_tokens, temp),
                                      conversations, seeds))
        if not self.answered:
            if all(r.error for r in replies):
                raise WorkFailed(f"{self.name}: the endpoint does not answer: {replies[0].error}")
            self.answered = True
        return replies

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _one(self, messages: list, seed: Optional[int], max_tokens: int, temp: float) -> Reply:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": temp, "stream": False}
        if seed is not None:
            body["seed"] = seed
        error = "no attempt"
        for attempt in range(self.retries):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                return self._post(body)
            except _Permanent as exc:
                return Reply(error=str(exc))
            except _Transient as exc:
                error = str(exc)
        return Reply(error=f"{error} (after {self.retries} attempts)" if self.retries > 1
                     else error)

    def _post(self, body: dict) -> Reply:
        import socket
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = _http_detail(exc)
            message = f"HTTP {exc.code} from {self.url}{detail}"
            if exc.code == 429 or exc.code >= 500:
                raise _Transient(message) from None
            raise _Permanent(message) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError):
                raise _Transient(f"connection refused at {self.url} (is the server running on "
                                 "that port?)") from None
            if isinstance(reason, socket.gaierror):
                raise _Transient(f"cannot resolve the host of {self.url}") from None
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Transient(f"no answer from {self.url} within {self.timeout:g} s") from None
            raise _Transient(f"{self.url}: {reason}") from None
        except (socket.timeout, TimeoutError):
            raise _Transient(f"no answer from {self.url} within {self.timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise _Transient(f"{self.url}: {exc.strerror or exc}") from None
        except ValueError:
            raise _Permanent(f"{self.url} did not answer with JSON (is it an OpenAI-compatible "
                             "/v1 URL?)") from None
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise _Permanent(f"{self.url}: no choices[0].message.content in the answer") from None
        return Reply(text, choice.get("finish_reason") or "stop")


class _Transient(Exception):
    """Worth another attempt: the server is down, busy or slow."""


class _Permanent(Exception):
    """The request itself is refused: the same request would be refused again."""


def _http_detail(exc) -> str:
    try:
        body = exc.read().decode("utf-8", "replace").strip()
    except Exception:  # the body of an error is a courtesy; its absence is not a new error
        return ""
    return f": {body.splitlines()[0][:200]}" if body else ""


def completions_url(url: str) -> str:
    """``URL/chat/completions`` for a base URL (``http://host:port/v1``, or one ending in
    ``/chat/completions`` already); a bare ``http://host:port`` gets ``/v1``. BadInput in one
    line for anything that is not an http(s) URL with a host."""
    from urllib.parse import urlsplit

    example = "e.g. http://127.0.0.1:11434/v1"
    try:
        parts = urlsplit(url.strip())
        port = parts.port          # reading it checks it: ValueError when out of range
    except ValueError as exc:
        raise BadInput(f"--endpoint {url}: not a valid URL ({exc}; {example})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise BadInput(f"--endpoint {url}: not an http:// or https:// URL with a host "
                       f"({example})")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path = (path or "/v1") + "/chat/completions"
    return parts._replace(path=path, fragment="").geturl()   # a query (api-version=) stays


def open_source(*, model: Optional[str], adapter: Optional[str], endpoint: Optional[str],
                api_key_env: Optional[str] = None, concurrency: int = 1,
                batch_size: int = DEFAULT_BATCH, timeout: float = DEFAULT_TIMEOUT_S,
                retries: int = DEFAULT_RETRIES, progress: Optional[Progress] = None):
    """The source the options name: an endpoint (``model`` is then its model name) or a local
    model."""
    if endpoint:
        if adapter:
            raise BadInput("--adapter is for a local --model; an endpoint serves its own")
        key = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise BadInput(f"--api-key-env {api_key_env}: that environment variable is not "
                               "set")
        return Endpoint(endpoint, model, key, concurrency, timeout, retries)
    if not model:
        raise BadInput("name a source: --model M (a local model) or --endpoint URL")
    return LocalModel(model, adapter, batch_size, progress)


# ---------------------------------------------------------------------------------------------
# Prompts and keys

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


def normalized(text: str) -> str:
    """Text as near-duplicate detection compares it: case, punctuation, numbering and spacing
    do not count."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", text)
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# Quality flags

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


# ---------------------------------------------------------------------------------------------
# The output: one file, or train/valid/test.jsonl in a directory

def _repair_tail(path: Path) -> int:
    """Cut a last line a hard kill left unfinished; returns the number of complete lines."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return data.count(b"\n", 0, end)


def _append(path: Path, lines: Sequence[str]) -> None:
    """Complete lines in one write, then fsync: a crash keeps whole lines or nothing new
    (a cut last line is repaired by the next run)."""
    if not lines:
        return
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def split_names(count: int, split: Sequence[float]) -> List[str]:
    """The split of each of ``count`` prompts, in input order: each goes to the split furthest
    behind its share, so the proportions hold at every length and a re-run assigns alike."""
    names, given = [], [0, 0, 0]
    for i in range(count):
        behind = [(i + 1) * share / 100 - given[k] for k, share in enumerate(split)]
        k = max(range(3), key=lambda j: (behind[j], -j))
        given[k] += 1
        names.append(SPLIT_NAMES[k])
    return names


class AnswerOutput:
    """Where answers go, what is there already, and the flags sidecar."""

    def __init__(self, out: Path, split: Optional[Sequence[float]]):
        out = Path(out)
        self.is_dir = out.is_dir() or out.suffix.lower() not in (".jsonl", ".json")
        if not self.is_dir and split is not None:
            raise BadInput(f"--split writes train/valid/test.jsonl: give a directory as --out, "
                           f"not {out}")
        self.out = out
        self.split = tuple(split) if split is not None else None
        folder = out if self.is_dir else out.parent
        self.flags_path = folder / (".generate.flags" if self.is_dir else f".{out.name}.flags")
        self.done: set = set()
        self.lines: Dict[Path, int] = {}

    def file_for(self, split_name: str) -> Path:
        return self.out / f"{split_name}.jsonl" if self.is_dir else self.out

    @property
    def files(self) -> List[Path]:
        if not self.is_dir:
            return [self.out]
        return [self.file_for(n) for n in SPLIT_NAMES]

    def open(self) -> None:
        folder = self.out if self.is_dir else self.out.parent
        if folder.exists() and not folder.is_dir():
            raise BadInput(f"{folder}: exists and is not a directory")
        folder.mkdir(parents=True, exist_ok=True)
        for path in self.files:
            self.lines[path] = _repair_tail(path)
            if path.exists():
                self._read_keys(path)
        _repair_tail(self.flags_path)
        for rec in _json_lines(self.flags_path):
            if rec.get("dropped"):
                self.done.add(rec.get("key"))

    def _read_keys(self, path: Path) -> None:
        for number, rec in enumerate(_json_lines(path), 1):
            messages = rec.get("messages") if isinstance(rec, dict) else None
            if not isinstance(messages, list) or not messages:
                raise BadInput(f"{path}:{number}: not a row this command writes (a "
                               '"messages" list); choose another --out')
            self.done.add(prompt_key(messages[:-1]))

    def existing_flags(self) -> List[dict]:
        return [rec for rec in _json_lines(self.flags_path) if rec.get("flags")]

    def write(self, rows: Sequence[Tuple[str, str, dict]], flags: Sequence[dict]) -> List[int]:
        """Append ``(split, key, record)`` rows; returns each row's line number. Flags for them
        are appended after (a flag lost to a crash costs less than a row)."""
        by_file: Dict[Path, List[str]] = {}
        numbers = []
        for split_name, key, rec in rows:
            path = self.file_for(split_name)
            by_file.setdefault(path, []).append(json.dumps(rec, ensure_ascii=False))
            self.lines[path] = self.lines.get(path, 0) + 1
            numbers.append(self.lines[path])
            self.done.add(key)
        for path, lines in by_file.items():
            _append(path, lines)
        _append(self.flags_path, [json.dumps(f, ensure_ascii=False) for f in flags])
        for f in flags:
            if f.get("dropped"):
                self.done.add(f["key"])
        return numbers


def _json_lines(path: Path) -> Iterable[dict]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise BadInput(f"{path}:{number}: invalid JSON; choose another --out") \
                        from None


# ---------------------------------------------------------------------------------------------
# Progress

class Pace:
    """Done / total with the rate and time left, for the progress line."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic):
        self.total, self.done, self.clock = total, 0, clock
        self.start = clock()

    def line(self, what: str) -> Tuple[str, float]:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{what} {self.done:,}/{self.total:,} · {rate:.2f}/s"
        if rate > 0 and self.done < self.total:
            left = int((self.total - self.done) / rate)
            text += f" · ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
        return text, (self.done / self.total if self.total else 1.0)


# ---------------------------------------------------------------------------------------------
# Answers

@dataclass
class AnswersResult:
    prompts: int = 0                 # distinct prompts in the input
    repeated: int = 0                # prompts given twice in the input (answered once)
    already: int = 0                 # answered by an earlier run
    written: int = 0
    dropped: int = 0                 # flagged and left out (--drop-flagged)
    failed: List[Tuple[int, str]] = field(default_factory=list)   # (prompt line, why)
    flags: List[Problem] = field(default_factory=list)            # the quality report
    files: List[Path] = field(default_factory=list)
    cancelled: bool = False


def generate_answers(source, prompts_path: Path, out: Path, *, system: Optional[str] = None,
                     max_tokens: int = 512, temp: float = 0.0, seed: Optional[int] = 0,
                     split: Optional[Sequence[float]] = None, drop_flagged: bool = False,
                     progress: Optional[Progress] = None,
                     cancel: Optional[threading.Event] = None,
                     on_written: Optional[Callable[[List[Path]], None]] = None) -> AnswersResult:
    """Answer every prompt of ``prompts_path`` not answered yet into ``out``."""
    if max_tokens < 1:
        raise BadInput("--max-tokens must be at least 1")
    prompts_path, out = Path(prompts_path), Path(out)
    output = AnswerOutput(out, split)
    if prompts_path.resolve() in {p.resolve() for p in output.files}:
        raise BadInput(f"{prompts_path}: is the input and would be written to; choose another "
                       "--out")
    prompts = read_prompts(prompts_path, system)
    unique: Dict[str, Prompt] = {}
    for p in prompts:
        unique.setdefault(p.key, p)
    todo_all = list(unique.values())
    names = split_names(len(todo_all), output.split or (100.0, 0.0, 0.0))
    output.open()
    result = AnswersResult(prompts=len(todo_all), repeated=len(prompts) - len(todo_all))
    seen_answers: Dict[str, int] = {}
    for path in output.files:
        for number, rec in enumerate(_json_lines(path), 1):
            seen_answers.setdefault(normalized(rec["messages"][-1].get("content") or ""), number)
    for rec in output.existing_flags():
        result.flags.append(_flag_problem(output, rec))
    todo = [(p, name) for p, name in zip(todo_all, names) if p.key not in output.done]
    result.already = len(todo_all) - len(todo)
    pace = Pace(len(todo))
    step = source.batch_size
    for start in range(0, len(todo), step):
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        batch = todo[start:start + step]
        try:
            replies = source.complete([list(p.messages) for p, _ in batch], max_tokens, temp,
                                      None if seed is None else seed + start, cancel)
        except Stopped:
            result.cancelled = True
            break
        rows, flags, kept = [], [], []
        pending: Dict[Path, int] = {}     # rows of this batch per file, for line numbers
        for (prompt, name), reply in zip(batch, replies):
            if reply.error:
                result.failed.append((prompt.line, reply.error))
                continue
            path = output.file_for(name)
            line = output.lines.get(path, 0) + pending.get(path, 0) + 1
            found = quality_flags(prompt.text, reply, seen_answers, line)
            record = {"messages": list(prompt.messages)
                      + [{"role": "assistant", "content": reply.text}]}
            dropped = bool(found) and drop_flagged
            if dropped:
                result.dropped += 1
                norm = normalized(reply.text)
                if seen_answers.get(norm) == line:
                    seen_answers[norm] = 0    # its first copy is not in the file
            else:
                rows.append((name, prompt.key, record))
                pending[path] = pending.get(path, 0) + 1
            if found:
                kept.append((found, dropped, path, line, prompt))
        numbers = output.write(rows, [])
        for found, dropped, path, line, prompt in kept:
            rec = {"key": prompt.key, "prompt_line": prompt.line, "flags": found,
                   "dropped": dropped, "file": path.name, "line": None if dropped else line}
            flags.append(rec)
            result.flags.append(_flag_problem(output, rec))
        output.write([], flags)
        result.written += len(numbers)
        pace.done += len(batch)
        if progress:
            progress(*pace.line("answers"))
        if on_written is not None:
            on_written(sorted({output.file_for(r[0]) for r in rows}))
    result.files = [p for p in output.files if p.exists()]
    return result


def _flag_problem(output: AnswerOutput, rec: dict) -> Problem:
    what = "; ".join(rec.get("flags") or ())
    if rec.get("dropped"):
        return Problem(str(output.out), 0, f"prompt line {rec.get('prompt_line')}: {what} "
                                           "(left out)", error=False)
    folder = output.out if output.is_dir else output.out.parent
    return Problem(str(folder / rec.get("file", output.out.name)), rec.get("line") or 0, what,
                   error=False)


# ---------------------------------------------------------------------------------------------
# Questions

@dataclass
class QuestionsResult:
    wanted: int = 0
    already: int = 0
    written: int = 0
    duplicates: int = 0              # exact or near-duplicate questions left out
    rounds: int = 0
    path: Optional[Path] = None
    cancelled: bool = False


def question_lines(text: str) -> List[str]:
    """The questions in a model's answer: one per line, numbering and bullets taken off,
    headings ("Here are ten questions:") left out; when some lines end in a question mark,
    only those (a small model mixes statements in)."""
    found = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:\d+\s*[.):-]|[-*•]|Q\d*[:.])\s*", "", line).strip().strip('"')
        if len(line) < 3 or line.endswith(":") or len(line) > 500:
            continue
        found.append(line)
    asked = [line for line in found if line.endswith(("?", "？"))]
    return asked or found


def _read_questions(path: Path) -> List[str]:
    if not path.exists():
        return []
    _repair_tail(path)
    if path.suffix.lower() == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    out = []
    for number, rec in enumerate(_json_lines(path), 1):
        if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str):
            raise BadInput(f'{path}:{number}: not a question this command writes ({{"prompt": '
                           '...}}); choose another --out')
        out.append(rec["prompt"])
    return out


def generate_questions(source, topic: str, count: int, out: Path, *,
                       system: Optional[str] = None, max_tokens: int = 512, temp: float = 0.8,
                       seed: Optional[int] = 0, max_rounds: Optional[int] = None,
                       progress: Optional[Progress] = None,
                       cancel: Optional[threading.Event] = None,
                       on_written: Optional[Callable[[List[Path]], None]] = None
                       ) -> QuestionsResult:
    """Ask for questions on ``topic`` until ``out`` holds ``count`` distinct ones."""
    if not topic.strip():
        raise BadInput("--topic: say what the questions are about")
    if count < 1:
        raise BadInput("--count must be at least 1")
    if max_tokens < 1:
        raise BadInput("--max-tokens must be at least 1")
    out = Path(out)
    if out.exists() and out.is_dir():
        raise BadInput(f"{out}: is a directory; questions go to a file (.jsonl or .txt)")
    out.parent.mkdir(parents=True, exist_ok=True)
    have = _read_questions(out)
    seen = {normalized(q) for q in have}
    result = QuestionsResult(wanted=count, already=len(have), path=out)
    head = [{"role": "system", "content": system}] if system else []
    rounds_left = max_rounds if max_rounds is not None else max(3, 2 * count)
    pace = Pace(max(0, count - len(have)))
    text_file = out.suffix.lower() == ".txt"
    while len(have) < count and rounds_left > 0:
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        needed = count - len(have)
        n = min(QUESTIONS_PER_REQUEST, needed)
        ask = head + [{"role": "user", "content": QUESTIONS_PROMPT.format(n=n, topic=topic)}]
        # As many requests as the questions still needed take, and one spare for the repeats
        # and the lines that are no question: on a laptop's CPU each costs minutes.
        requests = min(source.batch_size, -(-needed // QUESTIONS_PER_REQUEST) + 1)
        try:
            replies = source.complete([ask] * requests, max_tokens, temp,
                                      None if seed is None else seed + result.rounds * 1000,
                                      cancel)
        except Stopped:
            result.cancelled = True
            break
        result.rounds += 1
        rounds_left -= 1
        new: list[str] = []
        for reply in replies:
            for q in question_lines(reply.text):
                key = normalized(q)
                if not key or key in seen:
                    result.duplicates += 1
                    continue
                if len(have) + len(new) >= count:
                    break
                seen.add(key)
                new.append(q)
        _append(out, [q if text_file else json.dumps({"prompt": q}, ensure_ascii=False)
                      for q in new])
        have += new
        result.written += len(new)
        pace.done = result.written
        if progress:
            progress(*pace.line("questions"))
        if new and on_written is not None:
            on_written([out])
    return result
