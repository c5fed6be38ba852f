"""Make training data with a model: questions on a topic, then an answer to each prompt.

The model is a local one or an OpenAI-compatible server (model_sources.py). Generation runs for
hours on a laptop, so the output is built to survive anything (resumable_output.py): a re-run of
the same command skips the prompts already answered (keyed by a hash of the prompt) and repairs
a line a hard kill cut short, so a SIGKILL loses at most the answers in flight and never leaves
a half line or a duplicate. Inputs are only read.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import BadInput
from ..progress import Progress
from .answer_quality import normalized, quality_flags
from .file_report import Problem
from .model_sources import Stopped
from .prompts import Prompt, read_prompts
from .resumable_output import AnswerOutput, append_lines, json_lines, repair_tail, split_names

QUESTIONS_PER_REQUEST = 10

QUESTIONS_PROMPT = ("Write {n} different questions that someone might ask about {topic}. "
                    "Write one question per line, with no numbering and nothing else.")


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
        for number, rec in enumerate(json_lines(path), 1):
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
    repair_tail(path)
    if path.suffix.lower() == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    out = []
    for number, rec in enumerate(json_lines(path), 1):
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
        append_lines(out, [q if text_file else json.dumps({"prompt": q}, ensure_ascii=False)
                      for q in new])
        have += new
        result.written += len(new)
        pace.done = result.written
        if progress:
            progress(*pace.line("questions"))
        if new and on_written is not None:
            on_written([out])
    return result
