"""core.crash: why a training process died, from a line of its output or from its exit.

The exits are real: child processes that die by a signal, through a shell (exit 137), or with a
Python traceback after writing to a full device (/dev/full gives the real ENOSPC)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.core.crash import (
    OOM_ADVICE, PYTHON_ADVICE, Failure, explain_exit, explain_line, recorded, run_failure,
)
from tunedeck.core.events import End, Error, EventWriter, Resume, Start
from tunedeck.core.rundir import RunDirectory

METAL_OOM = ("libc++abi: terminating due to uncaught exception of type std::runtime_error: [METAL] "
             "Command buffer execution failed: Insufficient Memory "
             "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)")


def _die(code: str) -> subprocess.CompletedProcess:
    """A Python child running ``code``, stdout and stderr together as a run's train.log has them."""
    return subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)


def test_one_line_is_cause_then_advice():
    assert Failure("out of memory", "smaller batch_size").one_line() == "out of memory — smaller batch_size"
    assert Failure("exited", "").one_line() == "exited"


@pytest.mark.parametrize("line, cause, advice", [
    (METAL_OOM, "out of memory (Metal: Insufficient Memory)", OOM_ADVICE),
    ("RuntimeError: [METAL] Command buffer execution failed: Insufficient Memory "
     "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)",
     "out of memory (Metal: Insufficient Memory)", OOM_ADVICE),
    ("libc++abi: terminating due to uncaught exception of type std::runtime_error: [METAL] Command "
     "buffer execution failed: Caused GPU Timeout Error (00000002:kIOGPUCommandBufferCallbackErrorTimeout)",
     "a GPU step ran too long (Metal: GPU Timeout)", "smaller batch_size or max_seq_length"),
    ("libc++abi: terminating due to uncaught exception of type std::runtime_error: [METAL] Command "
     "buffer execution failed: Impacting Interactivity "
     "(0000000e:kIOGPUCommandBufferCallbackErrorImpactingInteractivity)",
     "keep the display responsive (Metal: Impacting Interactivity)", "display asleep"),
    ("[METAL] Command buffer execution failed: Something New (00000009:kIOGPUCommandBufferCallbackErrorX)",
     "GPU error (Metal: Something New)", "tunedeck resume RUN"),
    ("ValueError: [metal::malloc] Attempting to allocate 34359738368 bytes which is greater than the "
     "maximum allowed buffer size of 28991029248 bytes.",
     "one array needs 34.4 GB, more than Metal's largest buffer (29.0 GB)", "smaller batch_size"),
    ("RuntimeError: [metal::malloc] Resource limit (499000) exceeded.",
     "too many GPU buffers (Metal: resource limit 499000 exceeded)", "clear_cache_threshold"),
    ("libc++abi: terminating due to uncaught exception of type std::bad_alloc: std::bad_alloc",
     "out of memory", OOM_ADVICE),
    ("libc++abi: terminating due to uncaught exception of type std::invalid_argument: [reshape] bad",
     "aborted on an uncaught C++ exception (std::invalid_argument: [reshape] bad)", "update mlx"),
    ("OSError: [Errno 28] No space left on device", "disk full", "free space on the disk"),
    ("MemoryError", "out of memory", OOM_ADVICE),
    ("Killed", "killed by SIGKILL, most likely by the system's out-of-memory killer", OOM_ADVICE),
    ("Killed: 9", "SIGKILL", OOM_ADVICE),
    ("zsh: killed     mlx_lm.lora --config lora.yaml", "SIGKILL", OOM_ADVICE),
    ("bash: line 1: 4242 Killed                  python -m mlx_lm lora", "SIGKILL", OOM_ADVICE),
    ("[1]  + 4242 killed     python -m mlx_lm lora", "SIGKILL", OOM_ADVICE),
    ("Segmentation fault: 11", "segmentation fault (SIGSEGV)", "update mlx and mlx-lm"),
    ("Segmentation fault (core dumped)", "segmentation fault (SIGSEGV)", "update mlx"),
    ("zsh: segmentation fault  mlx_lm.lora --train", "segmentation fault (SIGSEGV)", "update mlx"),
    ("Fatal Python error: Segmentation fault", "segmentation fault (SIGSEGV)", "update mlx"),
    ("Bus error: 10", "bus error (SIGBUS)", "memory-mapped file"),
    ("zsh: bus error  python train.py", "bus error (SIGBUS)", "memory-mapped file"),
    ("Abort trap: 6", "aborted (SIGABRT)", "lines before it"),
    ("Illegal instruction: 4", "illegal instruction (SIGILL)", "Rosetta"),
])
def test_known_failure_lines_name_the_cause_and_what_to_try(line, cause, advice):
    failure = explain_line(line)
    assert failure is not None, line
    assert cause in failure.cause
    assert advice in failure.advice
    assert "\n" not in failure.one_line()


@pytest.mark.parametrize("line", [
    "KeyError: 'messages'",                       # a Python exception explain_line does not know
    "Killed 3 stale processes before starting",   # the words, not a shell's report
    "Iter 10: Train loss 2.198, Learning Rate 1.000e-05, It/sec 1.293, Tokens/sec 267.606, "
    "Trained Tokens 2070, Peak mem 2.283 GB",
    "[WARNING] Some sequences are longer than 2048 tokens.",
    "Loading pretrained model", "", "the segmentation of faults is a topic",
])
def test_other_lines_are_not_failures(line):
    assert explain_line(line) is None


def test_exit_code_zero_is_no_failure():
    assert explain_exit(0, METAL_OOM) is None


def test_killed_by_sigkill_is_likely_the_out_of_memory_killer():
    child = _die("import os, signal; print('Iter 1: Val loss 2.0, Val took 1.0s', flush=True); "
                 "os.kill(os.getpid(), signal.SIGKILL)")
    assert child.returncode == -signal.SIGKILL
    failure = explain_exit(child.returncode, child.stdout)
    assert "SIGKILL" in failure.cause and "out-of-memory killer" in failure.cause
    assert failure.advice == OOM_ADVICE


def test_exit_137_from_a_shell_is_sigkill_too():
    child = subprocess.run(
        ["sh", "-c", f"{sys.executable} -c 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'"],
        timeout=60)
    assert child.returncode == 137
    assert "SIGKILL" in explain_exit(137, "").cause


@pytest.mark.parametrize("sig, cause", [
    (signal.SIGSEGV, "segmentation fault (SIGSEGV)"),
    (signal.SIGBUS, "bus error (SIGBUS)"),
    (signal.SIGABRT, "aborted (SIGABRT)"),
])
def test_other_signals_are_named(sig, cause):
    # faulthandler off: its report would be the log tail, this is about the exit code alone.
    child = _die(f"import os; os.kill(os.getpid(), {int(sig)})")
    assert child.returncode == -sig
    assert cause in explain_exit(child.returncode, child.stdout).cause


def test_a_metal_abort_in_the_log_is_more_precise_than_the_signal():
    tail = "Starting training..., iters: 100\nIter 10: Val loss 2.0, Val took 1.0s\n" + METAL_OOM + "\n"
    failure = explain_exit(-signal.SIGABRT, tail)
    assert failure == Failure("out of memory (Metal: Insufficient Memory)", OOM_ADVICE)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full for a real ENOSPC")
def test_full_disk_traceback_names_the_disk_and_resume():
    child = _die("f = open('/dev/full', 'w')\nf.write('x' * 100000)\nf.flush()\n")
    assert child.returncode == 1 and "No space left on device" in child.stdout
    failure = explain_exit(child.returncode, child.stdout)
    assert failure.cause == "disk full (No space left on device)"
    assert "free space" in failure.advice and "tunedeck resume" in failure.advice


def test_an_unknown_exception_is_its_last_line():
    child = _die("import json\njson.loads('{\"text\": 1')\n")
    assert child.returncode == 1
    failure = explain_exit(child.returncode, child.stdout)
    assert failure.cause.startswith("json.decoder.JSONDecodeError: Expecting ")
    assert failure.advice == PYTHON_ADVICE


def test_an_earlier_attempt_in_the_same_log_does_not_count():
    # train.log spans resumes: the first attempt died of a GPU timeout, the second is segfaulted.
    tail = ("Starting training..., iters: 100\n"
            "[METAL] Command buffer execution failed: Caused GPU Timeout Error "
            "(00000002:kIOGPUCommandBufferCallbackErrorTimeout)\n"
            "Loading fine-tuned weights from adapters/0000050_adapters.safetensors\n"
            "Starting training..., iters: 100\nIter 60: Val loss 2.0, Val took 1.0s\n")
    assert "segmentation fault" in explain_exit(-signal.SIGSEGV, tail).cause


def test_a_nonzero_exit_without_words_quotes_the_last_line():
    failure = explain_exit(3, "Loading datasets\nsomething odd happened\n\n")
    assert failure.cause == "exited with code 3 after: something odd happened"


def test_run_dir_puts_the_run_in_the_resume_command(tmp_path):
    failure = explain_exit(-signal.SIGSEGV, "", run_dir=tmp_path / "run-1")
    assert f"`tunedeck resume {tmp_path / 'run-1'}`" in failure.advice


def test_a_recorded_error_gets_the_advice_its_words_call_for():
    # The runner records an exception as "Type: message"; the advice comes from what it names.
    metal = recorded("RuntimeError: [METAL] Command buffer execution failed: Insufficient Memory "
                     "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)")
    assert metal == Failure("out of memory (Metal: Insufficient Memory)", OOM_ADVICE)
    assert recorded("KeyError: 'messages'") == Failure("KeyError: 'messages'", "")
    assert recorded("disk full — free space", None) == Failure("disk full — free space", "")
    assert recorded("x", "do y").one_line() == "x — do y"


# -- what `tunedeck runs` shows of a run that failed -----------------------------------------------

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"


def run_dir(root: Path, name: str, state: str, **status) -> RunDirectory:
    run = RunDirectory(root / name)
    run.path.mkdir(parents=True)
    run.update_status(state=state, created_at=len(list(root.iterdir())), total_iters=30, **status)
    return run


def runs_lines(tunedeck, root: Path) -> list[str]:
    code, out, err = tunedeck("runs", "--root", root)
    assert code == 0, err
    return out.splitlines()


def test_runs_shows_failed_and_the_cause_with_what_to_try(tunedeck, tmp_path):
    # As the runner records an exception: "Type: message", no advice of its own.
    run_dir(tmp_path, "metal", "failed",
            error="RuntimeError: [METAL] Command buffer execution failed: Insufficient Memory "
                  "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)")
    lines = runs_lines(tunedeck, tmp_path)
    assert lines[1].split()[:2] == ["metal", "failed"]
    assert lines[2].strip() == f"out of memory (Metal: Insufficient Memory) — {OOM_ADVICE}"


def test_runs_reads_the_cause_from_the_error_event_when_status_has_none(tunedeck, tmp_path):
    run = run_dir(tmp_path, "killed", "failed")
    with EventWriter(run.metrics_jsonl) as events:
        events.append(Start(total_iters=30))
        events.append(Error(message="killed by SIGKILL, most likely by the system's "
                                    "out-of-memory killer", advice=OOM_ADVICE))
        events.append(End(state="failed"))
    lines = runs_lines(tunedeck, tmp_path)
    assert lines[1].split()[:2] == ["killed", "failed"]
    assert lines[2].strip() == ("killed by SIGKILL, most likely by the system's out-of-memory "
                                f"killer — {OOM_ADVICE}")


def test_an_interrupted_run_shows_the_crash_its_log_ends_with(tunedeck, tmp_path):
    # Nobody recorded the end (status still "running", no process holds the lock), but train.log
    # ends in the Metal abort, as tests/fixtures/logs/v032_crash_metal_oom.log does.
    run = run_dir(tmp_path, "oom", "running", pid=999_999)
    shutil.copy(LOGS / "v032_crash_metal_oom.log", run.train_log)
    lines = runs_lines(tunedeck, tmp_path)
    assert lines[1].split()[:2] == ["oom", "interrupted"]
    assert lines[2].strip() == f"out of memory (Metal: Insufficient Memory) — {OOM_ADVICE}"
    code, out, _ = tunedeck("runs", "--root", tmp_path, "--json")
    record = json.loads(out)
    assert (record["state"], record["error"], record["advice"]) == (
        "interrupted", "out of memory (Metal: Insufficient Memory)", OOM_ADVICE)


def test_an_error_before_a_resume_is_not_the_cause(tunedeck, tmp_path):
    run = run_dir(tmp_path, "resumed", "finished")
    with EventWriter(run.metrics_jsonl) as events:
        events.append(Start(total_iters=30))
        events.append(Error(message="out of memory (Metal: Insufficient Memory)", advice=OOM_ADVICE))
        events.append(Resume(iter=10, source="adapters/0000010_adapters.safetensors"))
        events.append(Start(total_iters=30))
        events.append(End(state="finished"))
    assert len(runs_lines(tunedeck, tmp_path)) == 2  # the header and the run, no cause
    assert run_failure(run) is None


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full for a real ENOSPC")
def test_a_run_that_died_of_a_full_disk_says_how_to_resume_it(tunedeck, tmp_path):
    run = run_dir(tmp_path, "full", "running", pid=999_999)
    child = _die("f = open('/dev/full', 'w')\nf.write('x' * 100000)\nf.flush()\n")
    run.train_log.write_text("Starting training..., iters: 30\nIter 10: Val loss 2.000, Val took "
                             "1.000s\n" + child.stdout)
    lines = runs_lines(tunedeck, tmp_path)
    assert lines[1].split()[:2] == ["full", "interrupted"]
    assert lines[2].strip() == (
        "disk full (No space left on device) — free space on the disk that holds the run, then "
        f"resume from the last complete checkpoint with `tunedeck resume {run.path}`")
