"""Where generated text comes from: a local MLX model loaded in this process (batched through
mlx-lm's own ``BatchGenerator``, the machinery behind ``batch_generate``), or any
OpenAI-compatible server (Ollama's ``/v1``, LM Studio, vLLM, ``mlx_lm.server``) over plain HTTP,
several requests at once. Both answer a batch of conversations with one Reply each.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from ..errors import BadInput, WorkFailed
from ..progress import Progress

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

DEFAULT_BATCH = 8
DEFAULT_TIMEOUT_S = 300.0       # a CPU server can take minutes over one long answer
DEFAULT_RETRIES = 3
BACKOFF_S = 0.5                 # first retry after this, doubling


@dataclass(frozen=True)
class Reply:
    text: str = ""
    finish_reason: Optional[str] = None    # "stop", "length", or None when it failed
    error: Optional[str] = None


class Stopped(Exception):
    """Generation was asked to stop; the answers in flight are dropped."""


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

