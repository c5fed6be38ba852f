"""The log parser on real mlx-lm output (0.32.2 and 0.31.3, recorded by tests/fixtures/logs/
record.py) and on the awkward input a live pipe delivers: partial chunks, escape codes, \\r
redraws, tracebacks, enormous lines. Also the event vocabulary's JSON form and files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tunedeck.core.events import (
    End, Error, Event, EventFileReader, EventWriter, Progress, Resume, Save, Start, Test, Train, Val,
    append_event, read_events,
)
from tunedeck.core.logparse import LogParser, parse_file, parse_text, strip_ansi

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"

# The 30-iteration runs (same seed, same data) print the same losses in both versions.
TRAIN_30 = [(5, 4.876), (10, 3.612), (15, 3.106), (20, 2.859), (25, 2.673), (30, 2.519)]
VAL_30 = [(1, 6.043), (10, 3.436), (20, 2.868), (30, 2.597)]
SAVES_30 = [(10, "0000010_adapters.safetensors"), (20, "0000020_adapters.safetensors"),
            (30, "0000030_adapters.safetensors")]
TRAIN_LONG = [(100, 2.499), (200, 1.951), (300, 1.889), (400, 1.857), (500, 1.845), (600, 1.835),
              (700, 1.832), (800, 1.831), (900, 1.823), (1000, 1.825), (1100, 1.819),
              (1200, 1.818)]
TRAIN_RESUME = [(5, 2.939), (10, 2.926), (15, 2.741), (20, 2.599)]
VAL_RESUME = [(1, 2.822), (10, 2.907), (20, 2.671)]
RESUMED_FROM = "a-piped/0000020_adapters.safetensors"

# What each recorded log contains, read off the logs themselves. 0.31 announces the final
# adapters.safetensors write ("Saved final weights to"); 0.32 prints nothing for it.
EXPECTED = {
    "v032_piped.log": dict(total=30, train=TRAIN_30, val=VAL_30, saves=SAVES_30),
    "v032_test.log": dict(total=30, train=TRAIN_30, val=VAL_30, saves=SAVES_30,
                          test=(2.653, 14.202)),
    "v032_tty.log": dict(total=30, train=TRAIN_30, val=VAL_30, saves=SAVES_30,
                         test=(2.653, 14.202)),
    "v032_pty.log": dict(total=30, train=TRAIN_30, val=VAL_30, saves=SAVES_30,
                         test=(2.653, 14.202)),
    "v032_crash.log": dict(total=30, train=[(5, 4.876)], val=[(1, 6.043)], saves=[],
                           error="KeyError: 'messages'"),
    "v032_resume.log": dict(total=20, train=TRAIN_RESUME, val=VAL_RESUME,
                            saves=SAVES_30[:2], resume=(20, RESUMED_FROM)),
    "v032_long.log": dict(total=1200, train=TRAIN_LONG,
                          val=[(1, 6.030), (500, 2.038), (1000, 2.033), (1200, 2.043)],
                          saves=[(600, "0000600_adapters.safetensors"),
                                 (1200, "0001200_adapters.safetensors")]),
    "v031_piped.log": dict(total=30, train=TRAIN_30, val=VAL_30,
                           saves=SAVES_30 + [(30, "adapters.safetensors")]),
    "v031_test.log": dict(total=30, train=TRAIN_30, val=VAL_30,
                          saves=SAVES_30 + [(30, "adapters.safetensors")], test=(2.653, 14.202)),
    "v031_pty.log": dict(total=30, train=TRAIN_30, val=VAL_30,
                         saves=SAVES_30 + [(30, "adapters.safetensors")], test=(2.653, 14.202)),
    "v031_crash.log": dict(total=30, train=[(5, 4.876)], val=[(1, 6.043)], saves=[],
                           error="KeyError: 'messages'"),
    "v031_resume.log": dict(total=20, train=TRAIN_RESUME, val=VAL_RESUME,
                            saves=SAVES_30[:2] + [(20, "adapters.safetensors")],
                            resume=(20, RESUMED_FROM)),
    "v031_long.log": dict(total=1200, train=TRAIN_LONG,
                          val=[(1, 6.030), (500, 2.038), (1000, 2.033), (1200, 2.043)],
                          saves=[(600, "0000600_adapters.safetensors"),
                                 (1200, "0001200_adapters.safetensors"),
                                 (1200, "adapters.safetensors")]),
}


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_log_yields_exactly_its_iterations_and_losses(name):
    expected = EXPECTED[name]
    events = parse_file(LOGS / name)

    assert [(e.iter, e.loss) for e in of(events, Train)] == expected["train"]
    assert [(e.iter, e.loss) for e in of(events, Val)] == expected["val"]
    assert [(e.iter, e.file) for e in of(events, Save)] == expected["saves"]
    assert [e.total_iters for e in of(events, Start)] == [expected["total"]]
    assert [(e.loss, e.ppl) for e in of(events, Test)] == ([expected["test"]] if "test" in expected else [])
    assert [e.message for e in of(events, Error)] == ([expected["error"]] if "error" in expected else [])
    assert [(e.iter, e.source) for e in of(events, Resume)] == (
        [expected["resume"]] if "resume" in expected else [])
    assert of(events, End) == []  # a log never says how the process ended


def test_event_order_follows_the_log():
    kinds = [e.kind for e in parse_file(LOGS / "v032_resume.log") if e.kind != "progress"]
    assert kinds == ["resume", "start", "val", "train", "val", "train", "save", "train", "val",
                     "train", "save"]


def test_v032_rows_give_tok_per_sec_and_cumulative_tokens():
    trains = of(parse_file(LOGS / "v032_piped.log"), Train)
    assert [e.tokens_per_sec for e in trains] == [2305, 2519, 2504, 2557, 2550, 2507]
    assert [e.trained_tokens for e in trains] == [800, 1600, 2300, 3100, 3900, 4700]
    # 0.32 no longer prints these.
    assert {(e.lr, e.it_per_sec, e.peak_mem_gb) for e in trains} == {(None, None, None)}

    long = of(parse_file(LOGS / "v032_long.log"), Train)
    assert [e.tokens_per_sec for e in long][:4] == [2174, 1889, 2159, 1460]  # "2,174"
    assert long[-1].trained_tokens == 187600  # "187.6k"


def test_v032_val_rows_give_the_validation_seconds():
    vals = of(parse_file(LOGS / "v032_test.log"), Val)
    assert [e.seconds for e in vals] == [0.10, 0.09, 0.14, 0.13]


def test_v031_lines_give_every_field():
    events = parse_file(LOGS / "v031_piped.log")
    first = of(events, Train)[0]
    assert first == Train(iter=5, loss=4.876, lr=1.0e-3, it_per_sec=10.901,
                          tokens_per_sec=1717.978, trained_tokens=788, peak_mem_gb=0.007)
    assert [e.it_per_sec for e in of(events, Train)] == [10.901, 15.271, 14.561, 8.435, 8.605, 8.597]
    assert [e.seconds for e in of(events, Val)] == [0.102, 0.068, 0.117, 0.134]


def test_thousands_separators_in_the_header_and_the_bar():
    events = parse_file(LOGS / "v032_long.log")
    assert of(events, Start) == [Start(total_iters=1200)]  # "batch · iters   4 · 1,200"
    assert of(events, Progress) == [Progress(phase="train", done=1200, total=1200)]


def test_tty_progress_bar_is_progress_not_a_loss():
    parser = LogParser()
    events = parser.feed((LOGS / "v032_tty.log").read_bytes()) + parser.close()
    train_progress = [e.done for e in of(events, Progress) if e.phase == "train"]
    # Every count the redrawn bar showed, once each, in order.
    assert train_progress == list(range(31))
    assert [e.iter for e in of(events, Train)] == [5, 10, 15, 20, 25, 30]
    assert {e.total for e in of(events, Progress) if e.phase == "train"} == {30}
    assert [(e.done, e.total) for e in of(events, Progress) if e.phase == "test"] == [(0, 2), (2, 2)]
    assert parser.progress == Progress(phase="test", done=2, total=2)
    assert parser.total_iters == 30 and parser.last_iter == 30


def test_real_terminal_recording_with_carriage_returns():
    raw = (LOGS / "v032_pty.log").read_bytes()
    assert b"\r\x1b[2K\x1b[1A" in raw  # what a terminal received: redraws in place
    events = parse_file(LOGS / "v032_pty.log")
    assert [e.done for e in of(events, Progress) if e.phase == "train"] == [
        0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 22, 23, 24, 25,
        26, 27, 28, 29, 30]


def test_crash_keeps_the_progress_reached():
    events = parse_file(LOGS / "v032_crash.log")
    assert of(events, Progress) == [Progress(phase="train", done=9, total=30)]
    assert events[-1] == Error(message="KeyError: 'messages'")


@pytest.mark.parametrize("name", ["v032_tty.log", "v032_pty.log", "v031_test.log", "v032_crash.log"])
def test_any_chunking_gives_the_same_events(name):
    data = (LOGS / name).read_bytes()
    whole = parse_text(data)
    rng = random.Random(name)
    for sizes in ([1], [2, 3, 5, 7], [rng.randint(1, 300) for _ in range(50)]):
        parser, events, pos, i = LogParser(), [], 0, 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            events += parser.feed(data[pos:pos + n])  # splits UTF-8, escapes, \r\n anywhere
            pos, i = pos + n, i + 1
        events += parser.close()
        assert events == whole


def test_text_and_bytes_and_file_agree(tmp_path):
    data = (LOGS / "v031_test.log").read_bytes()
    assert parse_text(data) == parse_text(data.decode()) == parse_file(LOGS / "v031_test.log")
    assert parse_file(LOGS / "v031_test.log", chunk_size=7) == parse_text(data)


# -- escape codes and line endings ---------------------------------------------------------------

def test_strip_ansi_removes_every_kind_of_sequence():
    text = ("\x1b[1;35mval\x1b[0m \x1b[38;2;1;2;3mrgb\x1b[0m \x1b[?25l\x1b[?2004h"
            "\x1b]8;;https://example.com/x\x1b\\link\x1b]8;;\x1b\\ \x1b]0;title\x07"
            "\x1b(Bcharset \x1b7saved\x1b8 \x1bPdcs\x1b\\end\x1b")
    assert strip_ansi(text) == "val rgb link charset saved end"


def test_escapes_around_and_inside_known_lines():
    log = ("\x1b]8;;file:///x\x1b\\Iter 5: Val loss 1.500, Val took 2.000s\x1b]8;;\x1b\\\n"
           "\x1b[2K\x1b[1A\x1b[2K  \x1b[38;5;244m  10\x1b[0m    \x1b[1;33m1.700 ▲\x1b[0m    "
           "\x1b[1m12,345\x1b[0m    \x1b[38;5;244m1500.0k\x1b[0m\n"
           "\x1b[?25hTest loss 1.000, Test ppl 2.718.\x1b\n")
    assert parse_text(log) == [
        Val(iter=5, loss=1.5, seconds=2.0),
        Train(iter=10, loss=1.7, tokens_per_sec=12345, trained_tokens=1500000),
        Test(loss=1.0, ppl=2.718),
    ]


@pytest.mark.parametrize("name", ["v032_tty.log", "v032_pty.log", "v032_crash.log", "v032_long.log"])
def test_colour_codes_change_nothing(name):
    # Rows are read as rich writes them, without stripping; the plain text must agree.
    text = (LOGS / name).read_text(encoding="utf-8")
    assert "\x1b[" in text
    assert parse_text(text) == parse_text(strip_ansi(text))


def test_carriage_returns_alone_separate_lines():
    log = ("Iter 1: Val loss 2.000, Val took 1.000s\rIter 2: Train loss 1.500, Learning Rate "
           "1.000e-05, It/sec 0.500, Tokens/sec 100.000, Trained Tokens 200, Peak mem 1.000 GB\r")
    assert [e.kind for e in parse_text(log)] == ["val", "train"]


def test_last_line_without_newline_counts_at_close():
    parser = LogParser()
    assert parser.feed("Test loss 1.000, Test ppl 2.718.") == []
    assert parser.close() == [Test(loss=1.0, ppl=2.718)]


# -- other wordings and unknown lines ------------------------------------------------------------

def test_older_iter_wordings():
    log = "\n".join([
        "Starting training..., iters: 600",
        "Iter 10: Train loss 2.100, It/sec 0.500, Tokens/sec 100.000",  # mlx-examples era
        "Iter 200: Saved adapter weights to adapters.npz.",
        "Iter 20: Val loss 1.900, Val took 12.500s",
        "Loading fine-tuned weights from adapters/adapters.safetensors",
        "Saved final weights to adapters/adapters.safetensors.",
    ]) + "\n"
    assert parse_text(log) == [
        Start(total_iters=600),
        Train(iter=10, loss=2.1, it_per_sec=0.5, tokens_per_sec=100.0),
        Save(iter=200, file="adapters.npz"),
        Val(iter=20, loss=1.9, seconds=12.5),
        Resume(iter=None, source="adapters/adapters.safetensors"),
        Save(iter=200, file="adapters.safetensors"),
    ]


def test_unknown_and_lookalike_lines_are_ignored():
    log = "\n".join([
        "[WARNING] Some sequences are longer than 2048 tokens. The longest sentence 3000 will be truncated",
        "Loading pretrained model", "Fetching 9 files: 100%|██████████| 9/9",
        "  iter   train_loss     tok/s     tokens",
        "  12 monkeys", "  5    not-a-number ▼    12    0.1k", "  save", "Iter x: Train loss 1",
        "Iter 5: something new", "train of thought", "val: 3", "Test loss: unknown",
        "│    model           /models/batch · iters   │",
        "",
    ])
    assert parse_text(log) == []


def test_nan_loss_is_reported():
    [event] = parse_text("     7    nan ▲        0      0.3k\n")
    assert event.iter == 7 and event.loss != event.loss


# -- tracebacks ----------------------------------------------------------------------------------

CHAINED = """\
Iter 5: Val loss 1.500, Val took 2.000s
Traceback (most recent call last):
  File "x.py", line 1, in <module>
    d["messages"]
KeyError: 'messages'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "x.py", line 3, in <module>
    raise ValueError("bad record")
ValueError: bad record at line 23
"""


def test_chained_traceback_is_one_error_with_the_final_exception():
    assert parse_text(CHAINED) == [Val(iter=5, loss=1.5, seconds=2.0),
                                   Error(message="ValueError: bad record at line 23")]


def test_error_comes_with_the_next_line_or_at_close():
    parser = LogParser()
    assert parser.feed("Traceback (most recent call last):\n  File \"x\"\nStopIteration\n") == []
    assert parser.feed("Test loss 1.000, Test ppl 2.718.\n") == [
        Error(message="StopIteration"), Test(loss=1.0, ppl=2.718)]
    parser.feed("Traceback (most recent call last):\n  File \"y\"\nOSError: disk full\n")
    assert parser.close() == [Error(message="OSError: disk full")]


def test_a_pause_lets_out_a_held_error_but_not_a_traceback_half_read():
    parser = LogParser()
    assert parser.feed("Traceback (most recent call last):\n  File \"x\"\n") == []
    assert parser.idle() == []  # its exception line has not come yet
    assert parser.feed("ValueError: bad\n") == []
    assert parser.idle() == [Error(message="ValueError: bad")]
    assert parser.feed("Segmentation fault: 11\n") == []
    assert [e.message for e in parser.idle()] == ["crashed with a segmentation fault (SIGSEGV)"]
    assert parser.close() == []


def test_huge_exception_message_is_abbreviated():
    [error] = parse_text("Traceback (most recent call last):\n  f\nValueError: " + "x" * 100_000 + "\n")
    assert error.message.startswith("ValueError: xxx") and len(error.message) <= 1000


FLAT_TRACEBACK = """\
Loading pretrained model
Traceback (most recent call last):
File "/usr/bin/mlx_lm.lora", line 6, in <module>
sys.exit(main())
^^^^^^
File "/lib/python3.12/site-packages/mlx_lm/utils.py", line 237, in _download
snapshot_download(
raise HFValidationError(
huggingface_hub.errors.HFValidationError: Repo id must use alphanumeric chars: '...'.
user@mac project % mlx_lm.lora --test
"""


def test_traceback_that_lost_its_indentation_still_gives_its_exception():
    # Pasted into Markdown: frames and source lines start at column 0 like the exception does.
    assert parse_text(FLAT_TRACEBACK) == [Error(
        message="huggingface_hub.errors.HFValidationError: Repo id must use alphanumeric chars: '...'.")]


def test_traceback_of_a_known_failure_is_explained():
    log = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
           "RuntimeError: [METAL] Command buffer execution failed: Insufficient Memory "
           "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)\n")
    [error] = parse_text(log)
    assert error.message == "out of memory (Metal: Insufficient Memory)"
    assert "batch_size" in error.advice and "grad_checkpoint" in error.advice


# -- native crashes ------------------------------------------------------------------------------

METAL_OOM_CAUSE = "out of memory (Metal: Insufficient Memory)"
METAL_OOM_WHAT = ("[METAL] Command buffer execution failed: Insufficient Memory "
                  "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)")


def test_metal_out_of_memory_abort_ends_a_recorded_run_with_an_error():
    # tests/fixtures/logs/v032_crash_metal_oom.log: v032_piped.log up to iteration 20, then the
    # abort line mlx prints on a Mac when a command buffer runs out of memory (a run dies so).
    events = parse_file(LOGS / "v032_crash_metal_oom.log")
    assert [(e.iter, e.loss) for e in of(events, Train)] == TRAIN_30[:4]
    assert events[-1] == Error(
        message=METAL_OOM_CAUSE,
        advice="smaller batch_size or max_seq_length, grad_checkpoint, fewer num_layers")


@pytest.mark.parametrize("report", [
    # macOS in a terminal: libc++abi's line, then zsh's report of the abort it causes.
    f"libc++abi: terminating due to uncaught exception of type std::runtime_error: {METAL_OOM_WHAT}\n"
    "zsh: abort      mlx_lm.lora --config lora.yaml\n",
    # The same, wrapped: the exception's message on a line of its own.
    "libc++abi: terminating due to uncaught exception of type std::runtime_error: \n"
    f"{METAL_OOM_WHAT}\n\nAbort trap: 6\n",
    # libstdc++ (Linux): the message comes on the what() line, then bash's "Aborted".
    "terminate called after throwing an instance of 'std::runtime_error'\n"
    f"  what():  {METAL_OOM_WHAT}\nAborted (core dumped)\n",
])
def test_native_abort_is_one_error_whatever_the_platform_prints(report):
    log = "Iter 10: Val loss 2.000, Val took 1.000s\n" + report
    assert [e for e in parse_text(log) if isinstance(e, Error)] == [Error(
        message=METAL_OOM_CAUSE,
        advice="smaller batch_size or max_seq_length, grad_checkpoint, fewer num_layers")]


def test_uncaught_exception_keeps_its_message_when_it_is_not_known():
    log = ("terminate called after throwing an instance of 'std::length_error'\n"
           "  what():  vector::reserve\nAborted (core dumped)\n")
    [error] = parse_text(log)
    assert error.message == "aborted on an uncaught C++ exception (std::length_error: vector::reserve)"


@pytest.mark.parametrize("line, cause", [
    ("Segmentation fault: 11", "crashed with a segmentation fault (SIGSEGV)"),
    ("zsh: segmentation fault  mlx_lm.lora --train", "crashed with a segmentation fault (SIGSEGV)"),
    ("Bus error: 10", "crashed with a bus error (SIGBUS)"),
    ("zsh: killed     mlx_lm.lora --train", "killed by SIGKILL, most likely by the system's "
                                            "out-of-memory killer"),
    ("Killed", "killed by SIGKILL, most likely by the system's out-of-memory killer"),
])
def test_a_signal_report_is_an_error(line, cause):
    events = parse_text(f"Iter 10: Val loss 2.000, Val took 1.000s\n{line}\n")
    assert events[0] == Val(iter=10, loss=2.0, seconds=1.0)
    assert [e.message for e in events[1:]] == [cause]


def test_faulthandler_and_shell_reporting_one_segfault_is_one_error():
    log = ("Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f3a (most recent call "
           "first):\n  File \"mlx_lm/tuner/trainer.py\", line 300 in train\n"
           "Segmentation fault (core dumped)\n")
    assert [e.message for e in parse_text(log)] == ["crashed with a segmentation fault (SIGSEGV)"]


def test_a_new_start_after_a_crash_can_crash_again():
    crash = "Segmentation fault: 11\n"
    log = f"Starting training..., iters: 10\n{crash}Starting training..., iters: 10\n{crash}"
    assert [e.kind for e in parse_text(log)] == ["start", "error", "start", "error"]


# -- prefixed lines ------------------------------------------------------------------------------

PREFIXES = [
    "Nov 22 10:15:00 ",                              # ts
    "Nov  2 10:15:00.123456 ",                       # ts "%b %e %H:%M:%.S"
    "00:00:05 ",                                     # ts -s
    "2024-05-01T10:00:00.123456789Z ",               # docker logs -t
    "2024-05-01T10:00:00+0200 ",                     # ts "%Y-%m-%dT%H:%M:%S%z"
    "2024-05-01 10:00:00,123 ",                      # Python logging
    "[2024-05-01 10:00:00] ",
    "[1761840227122170/train_model/4 (pid 79246)] ",  # a pipeline tool's task
    "2025-10-30 17:03:52.856 [1761840227122170/train_model/4 (pid 79246)] ",
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("name", ["v031_test.log", "v032_test.log", "v032_tty.log", "v032_crash.log",
                                  "v032_crash_metal_oom.log"])
def test_prefixed_lines_parse_like_bare_lines(name, prefix):
    bare = (LOGS / name).read_bytes()
    prefixed = b"".join(prefix.encode() + line for line in bare.splitlines(keepends=True))
    assert parse_text(prefixed) == parse_text(bare)
    assert of(parse_text(prefixed), Train)  # not vacuous: the log has train reports


def test_a_prefix_with_nothing_after_it_is_an_empty_line():
    assert parse_text("2025-10-30 17:05:10.882 [1761840227122170/end/5 (pid 79277)]\n"
                      "2025-10-30 17:05:10.883 Test loss 1.000, Test ppl 2.718.\n") == [
        Test(loss=1.0, ppl=2.718)]


def test_bracketed_words_are_not_a_prefix():
    [error] = parse_text(f"{METAL_OOM_WHAT}\n")
    assert error.message == METAL_OOM_CAUSE


# -- robustness ----------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_megabyte_lines_never_hang_or_go_quadratic():
    parser = LogParser()
    events = []
    # 16 MB without a newline, in 4 KB chunks: a parser that re-scans its buffer would need
    # hours; one that keeps everything would hold 16 MB.
    chunk = ("Iter 1: Val loss " + "9" * 4079) .encode()
    for _ in range(4096):
        events += parser.feed(chunk)
    assert parser._pending_len <= 64 * 1024
    events += parser.feed(b"\nIter 2: Val loss 1.000, Val took 1.000s\n")
    # A 5 MB line of digits and escape codes arriving at once, then a line that matters.
    events += parser.feed("  1 " + "1\x1b[0m 2.0 " * 500_000 + "\n")
    events += parser.feed("\x1b[" * 1_000_000 + "\n" + "Test loss 1.000, Test ppl 2.718.\n")
    events += parser.close()
    assert events == [Val(iter=2, loss=1.0, seconds=1.0), Test(loss=1.0, ppl=2.718)]


def test_invalid_utf8_is_replaced_not_fatal():
    events = parse_text(b"\xff\xfe garbage \xc3\n" + b"Test loss 1.000, Test ppl 2.718.\n")
    assert events == [Test(loss=1.0, ppl=2.718)]


# -- the event vocabulary ------------------------------------------------------------------------

def test_json_field_names_are_those_of_the_design():
    assert json.loads(Start(total_iters=100).to_json()) == {"kind": "start", "total_iters": 100}
    assert json.loads(Train(iter=10, loss=2.5).to_json()) == {
        "kind": "train", "iter": 10, "loss": 2.5, "lr": None, "it_per_sec": None,
        "tokens_per_sec": None, "trained_tokens": None, "peak_mem_gb": None}
    assert json.loads(Train(iter=10, loss=2.5, eta_s=60.0).to_json())["eta_s"] == 60.0
    assert json.loads(Val(iter=1, loss=3.0, seconds=4.5).to_json()) == {
        "kind": "val", "iter": 1, "loss": 3.0, "seconds": 4.5}
    assert json.loads(Save(iter=100, file="0000100_adapters.safetensors").to_json()) == {
        "kind": "save", "iter": 100, "file": "0000100_adapters.safetensors"}
    assert json.loads(Test(loss=2.4, ppl=11.0).to_json()) == {"kind": "test", "loss": 2.4, "ppl": 11.0}
    assert json.loads(Resume(iter=1600, source="a/0001600_adapters.safetensors").to_json()) == {
        "kind": "resume", "iter": 1600, "from": "a/0001600_adapters.safetensors"}
    assert json.loads(Error(message="boom").to_json()) == {"kind": "error", "message": "boom"}
    assert json.loads(End(state="finished").to_json()) == {"kind": "end", "state": "finished"}
    assert Start(total_iters=5).to_json() == '{"kind":"start","total_iters":5}'  # one compact line


def test_every_event_round_trips():
    events = parse_file(LOGS / "v032_tty.log") + parse_file(LOGS / "v031_crash.log") + [
        End(state="stopped"), Train(iter=3, loss=1.0, eta_s=12.5)]
    assert [Event.from_json(e.to_json()) for e in events] == events
    assert [Event.from_json(e.to_dict()) for e in events] == events


def test_bad_json_events_are_refused():
    for bad in ('{"kind":"train"}', '{"kind":"warp","x":1}', "[1]", "{not json", '{"kind":"end","state":"done"}'):
        with pytest.raises(ValueError):
            Event.from_json(bad)


def test_writer_appends_lines_and_reader_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with EventWriter(path) as writer:
        writer.append(Start(total_iters=10))
        writer.append(Train(iter=1, loss=2.0))
    append_event(path, End(state="finished"))
    assert path.read_text().count("\n") == 3
    with open(path, "a") as f:
        f.write('{"kind":"val","iter":2,"lo')  # the writer was killed mid-line
    assert read_events(path) == [Start(total_iters=10), Train(iter=1, loss=2.0), End(state="finished")]


def test_reader_skips_corrupt_and_future_lines_but_keeps_the_rest(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind":"start","total_iters":5}\n\x00\x00garbage\n'
                    '{"kind":"hyperdrive","level":9}\n{"kind":"train","iter":1,"loss":1.5}\n')
    assert read_events(path) == [Start(total_iters=5), Train(iter=1, loss=1.5)]


def test_file_reader_returns_only_completed_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    reader = EventFileReader(path)
    assert reader.read_new() == []  # not created yet
    with open(path, "w") as f:
        f.write('{"kind":"start","total_iters":5}\n{"kind":"train","iter":1,')
    assert reader.read_new() == [Start(total_iters=5)]
    with open(path, "a") as f:
        f.write('"loss":1.5}\n')
    assert reader.read_new() == [Train(iter=1, loss=1.5)]
    assert reader.read_new() == []
