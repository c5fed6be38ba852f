"""The event vocabulary shared by the log parser, the runner's metrics.jsonl and the UI.

One JSON object per line, with the field names of DESIGN.md ("Events"):

    {"kind":"start","total_iters":N}
    {"kind":"train","iter":N,"loss":x,"lr":x|null,"it_per_sec":x|null,"tokens_per_sec":x|null,
     "trained_tokens":n|null,"peak_mem_gb":x|null}          (+ "eta_s":x when an ETA is known)
    {"kind":"val","iter":N,"loss":x,"seconds":x|null}
    {"kind":"save","iter":N,"file":"0000100_adapters.safetensors"}
    {"kind":"test","loss":x,"ppl":x}
    {"kind":"resume","iter":N,"from":"path"}
    {"kind":"error","message":"...","advice":"..."|absent}
    {"kind":"health","iter":N,"issue":"diverging|overfitting|...","severity":"warn|bad",
     "evidence":"...","advice":"..."}
    {"kind":"end","state":"finished|failed|stopped"}

One more kind exists for live display only: ``progress`` (a progress bar's count, e.g. mlx-lm
0.32's ``train … 22% ·  9/40``). It is not a loss report, and ``tunedeck metrics --json`` does not
print it; the ETA uses it to know the current iteration between reports.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar, Dict, Iterator, List, Optional, Type, Union

from .file_tail import FileTail

END_STATES = ("finished", "failed", "stopped")


class Event:
    """Base of every event: ``kind`` names it in JSON, ``to_json``/``from_json`` convert it."""

    __slots__ = ()
    kind: ClassVar[str] = ""
    # JSON keys that differ from the attribute name (``from`` is a Python keyword).
    _renames: ClassVar[Dict[str, str]] = {}
    # Optional keys left out of the JSON when they are None (absent means "not known").
    _omit_none: ClassVar[tuple] = ()

    def to_dict(self) -> dict:
        out = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self._omit_none:
                continue
            out[self._renames.get(f.name, f.name)] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def from_json(data: Union[str, bytes, dict]) -> "Event":
        """Build the event a JSON line (or an already decoded dict) describes.

        Raises ValueError for anything that is not a known event with its required fields.
        """
        if not isinstance(data, dict):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc.msg}") from None
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        cls = EVENT_TYPES.get(data.get("kind"))  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"unknown event kind {data.get('kind')!r}")
        back = {v: k for k, v in cls._renames.items()}
        kwargs = {}
        for key, value in data.items():
            if key != "kind":
                kwargs[back.get(key, key)] = value
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]  # every subclass is a dataclass
        try:
            return cls(**{k: v for k, v in kwargs.items() if k in known})
        except TypeError as exc:
            raise ValueError(f"{cls.kind} event: {exc}") from None


@dataclass(slots=True)
class Start(Event):
    kind: ClassVar[str] = "start"
    total_iters: Optional[int]


@dataclass(slots=True)
class Train(Event):
    kind: ClassVar[str] = "train"
    _omit_none: ClassVar[tuple] = ("eta_s",)
    iter: int
    loss: float
    lr: Optional[float] = None
    it_per_sec: Optional[float] = None
    tokens_per_sec: Optional[float] = None
    trained_tokens: Optional[int] = None
    peak_mem_gb: Optional[float] = None
    eta_s: Optional[float] = None


@dataclass(slots=True)
class Val(Event):
    kind: ClassVar[str] = "val"
    iter: int
    loss: float
    seconds: Optional[float] = None


@dataclass(slots=True)
class Save(Event):
    kind: ClassVar[str] = "save"
    iter: Optional[int]
    file: str


@dataclass(slots=True)
class Test(Event):
    kind: ClassVar[str] = "test"
    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name
    loss: float
    ppl: float


@dataclass(slots=True)
class Resume(Event):
    kind: ClassVar[str] = "resume"
    _renames: ClassVar[Dict[str, str]] = {"source": "from"}
    _omit_none: ClassVar[tuple] = ("learning_rate",)
    # The iteration the resumed weights were saved at, when their file name tells it.
    iter: Optional[int]
    source: str
    # The new learning rate of a resume that changed it (`resume --learning-rate`).
    learning_rate: Optional[float] = None


@dataclass(slots=True)
class Error(Event):
    kind: ClassVar[str] = "error"
    _omit_none: ClassVar[tuple] = ("advice",)
    message: str
    # What to try, when the cause is known (out of memory: a smaller batch_size, ...).
    advice: Optional[str] = None


@dataclass(slots=True)
class Health(Event):
    """A finding of the run-health monitor (core.health): what went wrong, how sure, what to do."""

    kind: ClassVar[str] = "health"
    _omit_none: ClassVar[tuple] = ("seconds",)
    iter: Optional[int]
    issue: str
    severity: str
    evidence: str
    advice: str
    # What the answer check that found it cost (the monitor's own findings cost nothing to speak of).
    seconds: Optional[float] = None


@dataclass(slots=True)
class End(Event):
    kind: ClassVar[str] = "end"
    state: str

    def __post_init__(self) -> None:
        if self.state not in END_STATES:
            raise ValueError(f"end state must be one of {', '.join(END_STATES)}, not {self.state!r}")


@dataclass(slots=True)
class Progress(Event):
    """A progress bar's count: ``phase`` is "train" (done = iterations), "val" or "test" (batches)."""

    kind: ClassVar[str] = "progress"
    phase: str
    done: int
    total: Optional[int] = None


EVENT_TYPES: Dict[str, Type[Event]] = {
    cls.kind: cls for cls in (Start, Train, Val, Save, Test, Resume, Error, Health, End, Progress)
}


def parse_event_lines(text: str) -> Iterator[Event]:
    """Events from complete JSON lines; lines that are not events (blank, corrupt, or a kind
    this version does not know) are skipped so one bad line never hides the others."""
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            yield Event.from_json(line)
        except ValueError:
            continue


def read_events(path: Union[str, os.PathLike]) -> List[Event]:
    """All events of a metrics.jsonl. A last line cut short by a writer that was killed is skipped."""
    return list(parse_event_lines(Path(path).read_text(encoding="utf-8", errors="replace")))


class EventFileReader:
    """Reads a metrics.jsonl that another process is still appending to.

    ``read_new()`` returns the events of the lines completed since the last call; a line without
    its newline yet is left for the next call, so a half-written line is never misread.
    """

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path)
        self._tail = FileTail(self.path)

    def read_new(self) -> List[Event]:
        return list(parse_event_lines("\n".join(self._tail.read_lines())))


class EventWriter:
    """Appends events to a metrics.jsonl, one JSON line per event, each reaching the file at once.

    Each line goes out in a single ``write`` on a file opened for appending, so a reader never
    sees two events interleaved and a kill leaves at most one torn last line.
    """

    def __init__(self, path: Union[str, os.PathLike], fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, event: Event) -> None:
        data = (event.to_json() + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def append_event(path: Union[str, os.PathLike], event: Event) -> None:
    """Append one event to ``path`` (opened and closed for this one line)."""
    with EventWriter(path) as writer:
        writer.append(event)
