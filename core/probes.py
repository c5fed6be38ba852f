"""Answer checks: what a checkpoint actually answers to a few fixed prompts, and what is wrong.

A run's probe set lives in ``RUN/probes.json`` (the user may edit it): the first prompts of the
valid split plus a few general prompts with the words a right answer contains (``expect``). The
base model's greedy answers are recorded there once; a general prompt whose base answer does not
contain any of its ``expect`` words is kept but not judged (the base never knew it). Each check
answers every probe greedily (temperature 0, so the same weights always give the same answer) and
returns ``Health`` findings for the checkpoint's iteration:

``degenerate``
    An answer that is empty, that is only special tokens (``<|endoftext|>`` over and over,
    perhaps with line breaks between them), or
    whose repetition ratio is above ``repetition_threshold``: the share of its word 3-grams that
    repeat an earlier one (0 for an answer without a repeated 3-gram, near 1 for a loop), judged
    on answers of at least 8 words. warn when some answers are degenerate, bad when all are.
``forgetting``
    A general prompt the base answered correctly whose answer now contains none of its key
    content: the ``expect`` words, or for a prompt without them, the words of four letters or
    more in the base answer that are not in the prompt. The evidence puts the two answers side by
    side. warn for one prompt, bad for more than half of them.

Checks run on a saved checkpoint in a process of their own (``check_checkpoint``, which loads
base + checkpoint through core.chat; ``python -m tunedeck.core.probes RUN ITER``), or with a model
already in memory (``check_model``). Both report what they cost in seconds. A run with
``answer_checks`` on starts one such process after each checkpoint it completes
(core.checkpoint_checks); each check leaves ``adapters/NNNNNNN_answers.json`` beside its checkpoint
(the answers, the base's, the findings and the seconds) and appends its findings to metrics.jsonl.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Union

from .errors import BadInput
from .events import Health

PROBES_FILE = "probes.json"
DEGENERATE, FORGETTING = "degenerate", "forgetting"

# Prompts a small instruct model answers correctly, with the words a correct answer contains.
GENERAL_PROMPTS: list[dict[str, Any]] = [
    {"prompt": "What is the capital of France?", "expect": ["Paris"]},
    {"prompt": "How many days are there in a week?", "expect": ["seven", "7"]},
    {"prompt": "What colour is the sky on a clear day?", "expect": ["blue"]},
]
VALID_PROMPTS = 3
MIN_WORDS_FOR_REPETITION = 8
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class ProbeSettings:
    max_tokens: int = 48
    repetition_threshold: float = 0.5


@dataclass
class Probe:
    prompt: str
    kind: str                          # "valid" or "general"
    expect: List[str] = field(default_factory=list)
    base_answer: Optional[str] = None
    messages: Optional[List[dict]] = None  # a valid-split conversation up to the answer

    def conversation(self) -> List[dict]:
        return self.messages or [{"role": "user", "content": self.prompt}]

    def key_content(self) -> List[str]:
        if self.expect:
            return list(self.expect)
        prompt_words = {w.lower() for w in _WORD.findall(self.prompt)}
        return sorted({w for w in _WORD.findall(self.base_answer or "")
                       if len(w) >= 4 and w.lower() not in prompt_words}, key=str.lower)

    def base_knows(self) -> bool:
        """The base answer holds the key content (always true for a prompt without ``expect``)."""
        return self.base_answer is not None and (not self.expect or _mentions(self.base_answer, self.expect))


@dataclass
class Answer:
    probe: Probe
    text: str
    tokens: List[int]
    special_only: bool

    def words(self) -> List[str]:
        return _WORD.findall(self.text)


@dataclass
class CheckResult:
    iteration: Optional[int]
    answers: List[Answer]
    findings: List[Health]
    seconds: float


def _mentions(text: str, words: List[str]) -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(w.lower())}(?!\w)", lowered) for w in words)


def repetition_ratio(words: List[str], n: int = 3) -> float:
    """The share of the word n-grams of ``words`` that repeat an earlier one."""
    grams = [tuple(w.lower() for w in words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


# -- the probe set -------------------------------------------------------------------------------

def valid_probes(data_dir: Path, count: int = VALID_PROMPTS) -> List[Probe]:
    """The first ``count`` prompts of ``data_dir/valid.jsonl`` (chat or prompt/completion rows)."""
    from .data.formats import CHAT, COMPLETIONS, record_format

    path = Path(data_dir) / "valid.jsonl"
    probes: List[Probe] = []
    if not path.is_file():
        return probes
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            if len(probes) >= count:
                break
            try:
                record = json.loads(line)
            except ValueError:
                continue
            fmt = record_format(record)
            if fmt == CHAT:
                turns = record["messages"]
                cut = max((i for i, m in enumerate(turns) if m.get("role") == "assistant"), default=len(turns))
                before = turns[:cut]
                users = [m for m in before if m.get("role") == "user"]
                if users:
                    probes.append(Probe(prompt=str(users[-1].get("content", "")), kind="valid",
                                        messages=before))
            elif fmt == COMPLETIONS and isinstance(record.get("prompt"), str):
                probes.append(Probe(prompt=record["prompt"], kind="valid"))
    return probes


def default_probes(data_dir: Optional[Path]) -> List[Probe]:
    probes = valid_probes(data_dir) if data_dir else []
    return probes + [Probe(prompt=p["prompt"], kind="general", expect=list(p["expect"]))
                     for p in GENERAL_PROMPTS]


def load_probes(path: Path) -> List[Probe]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return [Probe(**entry) for entry in data["probes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a probe set ({exc})") from None


def save_probes(path: Path, probes: List[Probe]) -> None:
    from dataclasses import asdict

    from .rundir import write_atomic

    entries = [{k: v for k, v in asdict(p).items() if v not in (None, [])} for p in probes]
    write_atomic(Path(path), json.dumps({"probes": entries}, indent=1, ensure_ascii=False) + "\n")


# -- answering -----------------------------------------------------------------------------------

def _special_ids(tokenizer) -> set:
    ids = set(getattr(tokenizer, "all_special_ids", None) or ())
    return ids | set(getattr(tokenizer, "eos_token_ids", None) or ())


def answer(model, tokenizer, probe: Probe, settings: ProbeSettings) -> Answer:
    """The greedy answer of ``model`` to ``probe``, with its token ids."""
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from .chat import prompt_tokens

    # The prompt is built exactly as the Chat pane builds it (chat template or plain text).
    prompt = prompt_tokens(tokenizer, probe.conversation())
    tokens: List[int] = []
    pieces: List[str] = []
    for response in stream_generate(model, tokenizer, prompt, max_tokens=settings.max_tokens,
                                    sampler=make_sampler(temp=0.0)):
        pieces.append(response.text)
        if response.finish_reason != "stop":  # the token of a "stop" response is the end token
            tokens.append(int(response.token))
    special = _special_ids(tokenizer)
    text = "".join(pieces)
    # Special tokens with line breaks between them ("<|endoftext|>\n" over and over) say nothing
    # either: what is left once the special tokens' text is taken out must not be blank.
    content = text
    for marker in getattr(tokenizer, "all_special_tokens", None) or ():
        content = content.replace(marker, "")
    only_special = bool(tokens) and (all(t in special for t in tokens) or not content.strip())
    return Answer(probe=probe, text=text, tokens=tokens, special_only=only_special)


@contextmanager
def _answering(model):
    """Dropout off while answering (a model being trained is in training mode), then back."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def record_base_answers(model, tokenizer, probes: List[Probe], settings: ProbeSettings) -> bool:
    """Fill in the base answers that are missing (``model`` must be the base, or the base with
    fresh LoRA layers, which answer the same); True when any was added."""
    added = False
    with _answering(model):
        for probe in probes:
            if probe.base_answer is None:
                probe.base_answer = answer(model, tokenizer, probe, settings).text
                added = True
    return added


# -- judging -------------------------------------------------------------------------------------

def _show(text: str, limit: int = 80) -> str:
    shown = json.dumps(text, ensure_ascii=False)
    return shown if len(shown) <= limit else shown[:limit - 1] + "…\""


def degenerate_reason(a: Answer, settings: ProbeSettings) -> Optional[str]:
    if not a.tokens or not a.text.strip():
        return "an empty answer"
    if a.special_only:
        return f"only special tokens ({len(a.tokens)})"
    words = a.words()
    if len(words) >= MIN_WORDS_FOR_REPETITION:
        ratio = repetition_ratio(words)
        if ratio > settings.repetition_threshold:
            return f"repetition ratio {ratio:.2f}"
    return None


def judge(answers: List[Answer], iteration: Optional[int], settings: ProbeSettings) -> List[Health]:
    findings: List[Health] = []
    bad = [(a, degenerate_reason(a, settings)) for a in answers]
    bad = [(a, why) for a, why in bad if why]
    if bad:
        a, why = bad[0]
        findings.append(Health(
            iter=iteration, issue=DEGENERATE, severity="bad" if len(bad) == len(answers) else "warn",
            evidence=(f"{len(bad)} of {len(answers)} answers degenerate: {_show(a.probe.prompt, 50)} → "
                      f"{_show(a.text)} ({why})"),
            advice=("do not use this checkpoint; an earlier one may answer well. If later ones do "
                    "the same: check the data for repeated patterns and its diversity, stop "
                    "earlier, lower the learning rate; when chatting, a higher temperature or "
                    "top_p < 1 hides repetition but does not cure it")))
    general = [a for a in answers if a.probe.kind == "general" and a.probe.base_knows()]
    forgot = [a for a in general if a.probe.key_content() and not _mentions(a.text, a.probe.key_content())]
    if forgot:
        a = forgot[0]
        findings.append(Health(
            iter=iteration, issue=FORGETTING,
            severity="bad" if len(forgot) * 2 > len(general) else "warn",
            evidence=(f"{len(forgot)} of {len(general)} general prompts forgotten: "
                      f"{_show(a.probe.prompt, 50)} base: {_show(a.probe.base_answer or '')} | now: "
                      f"{_show(a.text)} (no {' / '.join(a.probe.key_content()[:3])})"),
            advice=("mix general data into the training set, train fewer iterations or with a "
                    "lower learning rate, or use an earlier checkpoint")))
    return findings


# -- the two ways to run a check -----------------------------------------------------------------

def check_model(model, tokenizer, probes: List[Probe], iteration: Optional[int],
                settings: Optional[ProbeSettings] = None) -> CheckResult:
    """Answer and judge every probe with ``model`` as it is now (a model being trained too:
    dropout is switched off for the answers and restored after)."""
    settings = settings or ProbeSettings()
    start = time.perf_counter()
    with _answering(model):
        answers = [answer(model, tokenizer, p, settings) for p in probes]
    return CheckResult(iteration, answers, judge(answers, iteration, settings),
                       time.perf_counter() - start)


def ensure_probe_set(run_dir: Path, model_dir: Path, data_dir: Optional[Path],
                     settings: Optional[ProbeSettings] = None, base=None) -> List[Probe]:
    """The run's probe set, created from the data the first time, with the base model's answers
    recorded for any probe that has none. ``base``: a ``(model, tokenizer)`` that answers as the
    base does (the training process before it loads any adapter weights), else the base is
    loaded through core.chat."""
    settings = settings or ProbeSettings()
    path = Path(run_dir) / PROBES_FILE
    probes = load_probes(path) if path.exists() else default_probes(data_dir)
    if any(p.base_answer is None for p in probes):
        if base is None:
            from .chat import ChatModel

            chat = ChatModel(Path(model_dir))
            base = chat.model, chat.tokenizer
        model, tokenizer = base
        record_base_answers(model, tokenizer, probes, settings)
        save_probes(path, probes)
    return probes


def check_checkpoint(run_dir: Path, checkpoint: Union[str, Path], model_dir: Path,
                     data_dir: Optional[Path] = None,
                     settings: Optional[ProbeSettings] = None) -> CheckResult:
    """Load base + ``checkpoint`` (a numbered file or an adapter directory) and check it."""
    from .adapters import checkpoint_iteration, resolve_adapter
    from .chat import ChatModel

    settings = settings or ProbeSettings()
    start = time.perf_counter()
    ref = resolve_adapter(checkpoint)
    chat = ChatModel(Path(model_dir))
    probes = ensure_probe_set(run_dir, model_dir, data_dir, settings, base=(chat.model, chat.tokenizer))
    chat.set_adapter(ref)
    result = check_model(chat.model, chat.tokenizer, probes, checkpoint_iteration(ref.weights), settings)
    result.seconds = time.perf_counter() - start
    return result


def answers_file(adapters: Path, iteration: Optional[int]) -> Path:
    """Beside the checkpoint's own files, so a resume that moves later checkpoints aside moves
    their checks with them, and a follower watching the adapters directory sees it appear."""
    return Path(adapters) / f"{iteration or 0:07d}_answers.json"


def save_answers(adapters: Path, result: CheckResult) -> Path:
    """The checkpoint's answers beside the base's, its findings and what the check cost."""
    from .rundir import write_atomic

    path = answers_file(adapters, result.iteration)
    write_atomic(path, json.dumps({
        "iteration": result.iteration, "seconds": round(result.seconds, 3),
        "answers": [{"prompt": a.probe.prompt, "kind": a.probe.kind, "answer": a.text,
                     "base_answer": a.probe.base_answer, "special_only": a.special_only}
                    for a in result.answers],
        "findings": [f.to_dict() for f in result.findings]}, indent=1, ensure_ascii=False) + "\n")
    return path


def _finding(data: dict) -> Health:
    event = Health.from_json(data)
    if not isinstance(event, Health):
        raise ValueError(f"not a finding: {type(event).__name__}")
    return event


@dataclass
class RecordedCheck:
    """What a saved ``NNNNNNN_answers.json`` says about its checkpoint."""

    iteration: int
    seconds: float
    findings: List[Health]

    @property
    def summary(self) -> str:
        """In a few words: "ok, 3.2 s" or "bad degenerate, 3.2 s"."""
        worst = {"bad": 2, "warn": 1}
        shown = sorted(self.findings, key=lambda f: -worst.get(f.severity, 0))
        what = ", ".join(f"{f.severity} {f.issue}" for f in shown) or "ok"
        return f"{what}, {self.seconds:.1f} s"


def recorded_checks(adapters: Path) -> dict:
    """The answer checks saved in a run's adapters directory, by iteration (unreadable ones are
    left out: a check being written is not there yet, it is renamed into place whole)."""
    checks = {}
    for path in Path(adapters).glob("[0-9]*_answers.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            findings = [_finding(f) for f in data.get("findings", [])]
            checks[int(data["iteration"])] = RecordedCheck(int(data["iteration"]),
                                                           float(data["seconds"]), findings)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return checks


def main(argv=None) -> int:
    """``python -m tunedeck.core.probes RUN_DIR CHECKPOINT``: check one saved checkpoint in a
    process of its own; findings are appended to the run's metrics.jsonl (one write per line,
    safe beside a training process appending too) and the answers saved beside the checkpoint."""
    import argparse

    from .checkpoint_checks import end_with_the_run
    from .config import TrainConfig
    from .events import append_event
    from .rundir import RunDirectory

    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.probes")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("checkpoint", help="an iteration number or a checkpoint file")
    # Given by a training run that starts the check (core.checkpoint_checks): end with it.
    parser.add_argument("--lifeline", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lifeline is not None:
        end_with_the_run(args.lifeline, args.supervisor, args.checkpoint)
        os.nice(10)  # the training beside it comes first
    run = RunDirectory(args.run_dir)
    try:
        config = TrainConfig.from_mlx_yaml(run.mlx_yaml)
        checkpoint = Path(args.checkpoint)
        if args.checkpoint.isdigit():
            checkpoint = run.adapters / f"{int(args.checkpoint):07d}_adapters.safetensors"
        result = check_checkpoint(run.path, checkpoint, Path(config.model), Path(config.data))
    except BadInput as exc:
        print(f"tunedeck: error: {exc}", file=sys.stderr)
        return 2
    seconds = round(result.seconds, 3)
    for finding in result.findings:
        append_event(run.metrics_jsonl, Health(
            iter=finding.iter, issue=finding.issue, severity=finding.severity,
            evidence=finding.evidence, advice=finding.advice, seconds=seconds))
    save_answers(run.adapters, result)
    summary = "; ".join(f"{f.severity} {f.issue}: {f.evidence}" for f in result.findings) or "ok"
    print(f"[tunedeck] answer check of checkpoint {result.iteration}: {summary} "
          f"({result.seconds:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
