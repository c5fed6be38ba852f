"""Real mlx-lm logs other people published (../shared/realdata/logs, see its README) parse into
the train, val, save and test events they show. The figures below were read off the logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunedeck.core.events import Error, Progress, Save, Start, Test, Train, Val
from tunedeck.core.logparse import parse_file

REALDATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "logs"

pytestmark = pytest.mark.skipif(not REALDATA.is_dir(),
                                reason=f"the published logs are not here ({REALDATA.resolve()})")


def events_of(name: str) -> dict:
    path = REALDATA / name
    if not path.exists():
        pytest.skip(f"{path} is missing")
    kinds: dict = {}
    for event in parse_file(path):
        kinds.setdefault(type(event), []).append(event)
    return kinds


def checkpoints(every: int, last: int) -> list:
    return [(i, f"{i:07d}_adapters.safetensors") for i in range(every, last + 1, every)]


def test_pipeline_log_with_timestamp_and_task_prefixes():
    # Every line: "2025-10-30 17:03:52.856 [1761840227122170/train_model/4 (pid 79246)] ...".
    e = events_of("metaflow_prefixed_qwen.log")
    assert [s.total_iters for s in e[Start]] == [100]
    train = e[Train]
    assert [t.iter for t in train] == list(range(10, 101, 10))
    assert (train[0].loss, train[0].lr, train[0].it_per_sec, train[0].tokens_per_sec,
            train[0].trained_tokens, train[0].peak_mem_gb) == (2.198, 1e-5, 1.293, 267.606, 2070, 2.283)
    assert (train[-1].loss, train[-1].trained_tokens, train[-1].peak_mem_gb) == (0.503, 18673, 2.695)
    assert [(v.iter, v.loss, v.seconds) for v in e[Val]] == [(1, 2.699, 2.702), (100, 0.922, 2.44)]
    assert [(s.iter, s.file) for s in e[Save]] == checkpoints(100, 100) + [(100, "adapters.safetensors")]
    assert Error not in e and Test not in e


def test_notebook_run_stopped_after_iteration_460_without_an_error():
    # Cursor-up codes from download bars; [WARNING] lines glued onto tqdm's validation bars.
    e = events_of("qwen25_15b_notebook_interrupted.log")
    assert [s.total_iters for s in e[Start]] == [500]
    train = e[Train]
    assert [t.iter for t in train] == list(range(10, 461, 10))
    assert (train[0].loss, train[0].tokens_per_sec, train[0].trained_tokens) == (0.960, 534.457, 7489)
    assert (train[-1].loss, train[-1].trained_tokens, train[-1].peak_mem_gb) == (0.744, 604299, 20.338)
    assert [(v.iter, v.loss, v.seconds) for v in e[Val]] == [
        (1, 1.034, 7.205), (200, 0.743, 5.732), (400, 0.758, 4.833)]
    assert [(s.iter, s.file) for s in e[Save]] == checkpoints(100, 400)
    assert Error not in e and Test not in e
    # The validation bars count: the run's position is known between reports too.
    assert Progress(phase="val", done=5, total=5) in e[Progress]


def test_terminal_session_with_a_run_two_failed_tests_and_two_passing_ones():
    e = events_of("qwen25_7b_session_crash.log")
    assert [s.total_iters for s in e[Start]] == [1000]
    train = e[Train]
    assert [t.iter for t in train] == list(range(10, 1001, 10))
    assert (train[0].loss, train[0].it_per_sec, train[0].trained_tokens) == (0.476, 0.066, 9935)
    assert (train[-1].loss, train[-1].trained_tokens, train[-1].peak_mem_gb) == (0.004, 952651, 12.247)
    assert [(v.iter, v.loss) for v in e[Val]] == [
        (1, 0.928), (200, 0.374), (400, 0.555), (600, 0.616), (800, 0.787), (1000, 0.826)]
    assert [(s.iter, s.file) for s in e[Save]] == checkpoints(100, 1000) + [(1000, "adapters.safetensors")]
    # The two --test runs that died: their tracebacks lost their indentation in Markdown, and
    # each error is the exception's own line, not a frame.
    assert [err.message for err in e[Error]] == [
        "huggingface_hub.errors.HFValidationError: Repo id must use alphanumeric chars, '-', '*' "
        "or '.'. The name cannot start or end with '-' or '.' and the maximum length is 96: '...'.",
        "ValueError: [matmul] Last dimension of first input with shape (4,320,2048) must match "
        "second to last dimension of second input with shape (3584,8).",
    ]
    assert [(t.loss, t.ppl) for t in e[Test]] == [(1.837, 6.28), (1.941, 6.969)]
