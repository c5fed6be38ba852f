"""``tunedeck metrics``: tables and JSON from run directories, log files and pipes, following
live output until the run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import TINY_LEARNING_RATE, TINY_LORA
from tests.core.runhelpers import like_a_terminal
from tunedeck.core.cli import main
from tunedeck.core.events import End, Error, EventWriter, Health, Resume, Save, Start, Train, Val
from tunedeck.core.logparse import parse_file

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "tests" / "fixtures" / "logs"


def run(capsys, *argv):
    code = main(["metrics", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


def test_table_of_a_log_file(capsys):
    code, out, _ = run(capsys, LOGS / "v032_test.log")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["iter", "train", "loss", "val", "loss", "tok/s", "ETA"]
    rows = [line.split() for line in lines if line.split()[0].isdigit()]
    # One row per reported iteration; a validation shares the row of its iteration.
    assert [r[:3] for r in rows] == [["1", "-", "6.043"], ["5", "4.876", "-"], ["10", "3.612", "3.436"],
                                     ["15", "3.106", "-"], ["20", "2.859", "2.868"],
                                     ["25", "2.673", "-"], ["30", "2.519", "2.597"]]
    assert rows[1][3] == "1,680" and rows[-1][4] == "0s"
    assert "saved 0000020_adapters.safetensors" in out
    assert "test loss 2.653, ppl 14.202" in out
    assert lines[-1] == ("iteration 30/30 · last loss 2.519 · best val 2.597 (iteration 30) · "
                         "test loss 2.653 · ETA done")


def test_table_of_a_crashed_run_says_why(capsys):
    code, out, _ = run(capsys, LOGS / "v031_crash.log")
    assert code == 0
    assert "error: KeyError: 'messages'" in out
    assert out.splitlines()[-1] == ("iteration 5/30 · last loss 4.876 · best val 6.043 "
                                    "(iteration 1) · failed: KeyError: 'messages'")


OOM = "out of memory (Metal: Insufficient Memory)"
OOM_ADVICE = "smaller batch_size or max_seq_length, grad_checkpoint, fewer num_layers"


def test_a_log_ending_in_the_metal_out_of_memory_abort_has_an_error_event_naming_it():
    # The console script, as a user runs it on a log whose run died on a Mac's Metal abort.
    tunedeck_bin = Path(sys.executable).parent / "tunedeck"
    log = LOGS / "v032_crash_metal_oom.log"
    done = subprocess.run([str(tunedeck_bin), "metrics", str(log), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = json_lines(done.stdout)
    assert printed[-1] == {"kind": "error", "message": OOM, "advice": OOM_ADVICE}
    assert [p["iter"] for p in printed if p["kind"] == "train"] == [5, 10, 15, 20]


def test_table_of_an_out_of_memory_run_says_what_to_try(capsys):
    code, out, _ = run(capsys, LOGS / "v032_crash_metal_oom.log")
    assert code == 0
    assert f"error: {OOM} — {OOM_ADVICE}" in out
    assert out.splitlines()[-1] == ("iteration 20/30 · last loss 2.859 · best val 2.868 "
                                    f"(iteration 20) · failed: {OOM} — {OOM_ADVICE}")


def test_json_is_the_event_vocabulary_with_eta(capsys):
    code, out, _ = run(capsys, LOGS / "v031_long.log", "--json")
    assert code == 0
    printed = json_lines(out)
    expected = [e.to_dict() for e in parse_file(LOGS / "v031_long.log") if e.kind != "progress"]
    assert [{k: v for k, v in p.items() if k != "eta_s"} for p in printed] == expected
    trains = [p for p in printed if p["kind"] == "train"]
    assert all("eta_s" in p for p in trains)
    etas = [p["eta_s"] for p in trains]
    assert etas[0] > etas[5] > etas[-1] == 0.0
    assert not any("eta_s" in p for p in printed if p["kind"] != "train")


def make_run(tmp_path, events, state="running"):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"state": state}))
    with EventWriter(run_dir / "metrics.jsonl") as writer:
        for event in events:
            writer.append(event)
    return run_dir


RUNNER_EVENTS = [Start(total_iters=100), Val(iter=1, loss=3.2, seconds=40.0)] + [
    Train(iter=i, loss=3.0 - i / 100, lr=1e-4, it_per_sec=0.5, tokens_per_sec=400.0,
          trained_tokens=i * 800, peak_mem_gb=3.2) for i in (10, 20, 30)]


def test_run_directory_metrics_jsonl(tmp_path, capsys):
    run_dir = make_run(tmp_path, RUNNER_EVENTS)
    code, out, _ = run(capsys, run_dir, "--json")
    assert code == 0
    printed = json_lines(out)
    assert [p["kind"] for p in printed] == ["start", "val", "train", "train", "train"]
    # 70 steps at 2 s, and validations before steps 200 (mlx-lm's default)... past the end,
    # so only the last one: 140 s + 40 s.
    assert printed[-1]["eta_s"] == pytest.approx(180.0)
    code, out, _ = run(capsys, run_dir)
    assert out.splitlines()[-1] == ("iteration 30/100 · last loss 2.700 · best val 3.200 "
                                    "(iteration 1) · ETA 3m00s")


def test_run_directory_without_metrics_reads_its_train_log(tmp_path, capsys):
    run_dir = tmp_path / "r2"
    run_dir.mkdir()
    (run_dir / "train.log").write_bytes((LOGS / "v032_resume.log").read_bytes())
    code, out, _ = run(capsys, run_dir, "--json")
    assert code == 0
    assert json_lines(out)[0] == {"kind": "resume", "iter": 20,
                                  "from": "a-piped/0000020_adapters.safetensors"}


def test_a_metrics_jsonl_given_by_path(tmp_path, capsys):
    run_dir = make_run(tmp_path, RUNNER_EVENTS)
    code, out, _ = run(capsys, run_dir / "metrics.jsonl", "--json")
    assert [p["kind"] for p in json_lines(out)] == ["start", "val", "train", "train", "train"]


def test_a_log_whose_last_line_has_no_newline_counts_that_line(tmp_path, capsys):
    # A process killed mid-write leaves its last line without a newline: the tail holds such a
    # line back while it may still grow, and counts it once the reading ends.
    log = tmp_path / "train.log"
    log.write_bytes((LOGS / "v032_test.log").read_bytes().rstrip(b"\n"))
    code, out, _ = run(capsys, log, "--json")
    assert code == 0
    assert json_lines(out)[-1] == {"kind": "test", "loss": 2.653, "ppl": 14.202}


def test_a_failed_run_directory_says_why_from_its_status(tmp_path, capsys):
    # The runner records an exception as "Type: message"; the advice comes from what it names.
    run_dir = make_run(tmp_path, RUNNER_EVENTS, state="failed")
    status = json.loads((run_dir / "status.json").read_text())
    status["error"] = ("RuntimeError: [METAL] Command buffer execution failed: Insufficient "
                       "Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)")
    (run_dir / "status.json").write_text(json.dumps(status))
    code, out, _ = run(capsys, run_dir)
    assert code == 0
    assert out.splitlines()[-1].endswith(f"· failed: {OOM} — {OOM_ADVICE}")


def test_a_crash_before_a_resume_is_not_how_the_run_ended(tmp_path, capsys):
    events = [Start(total_iters=30), Train(iter=10, loss=2.0),
              Error(message=OOM, advice=OOM_ADVICE), End(state="failed"),
              Resume(iter=10, source="adapters/0000010_adapters.safetensors"),
              Start(total_iters=30), Train(iter=30, loss=1.5), End(state="finished")]
    code, out, _ = run(capsys, make_run(tmp_path, events, state="finished"))
    assert f"error: {OOM} — {OOM_ADVICE}" in out  # in its place in the history
    assert "failed" not in out.splitlines()[-1]


def test_missing_path_is_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = run(capsys, tmp_path / "nope")
    assert code == 2 and out == ""
    assert err == f"tunedeck: error: {tmp_path / 'nope'}: no such run directory or log file\n"
    code, out, err = run(capsys, tmp_path)
    assert code == 2 and err.count("\n") == 1 and "not a run directory" in err


class SignallingOut:
    """stdout stand-in that lets a test wait until a given text has been printed."""

    def __init__(self):
        self.text = ""
        self._changed = threading.Condition()

    def write(self, s):
        with self._changed:
            self.text += s
            self._changed.notify_all()
        return len(s)

    def flush(self):
        pass

    def wait_for(self, needle, timeout=20.0):
        with self._changed:
            assert self._changed.wait_for(lambda: needle in self.text, timeout), self.text


def follow_in_thread(monkeypatch, *argv):
    out = SignallingOut()
    monkeypatch.setattr(sys, "stdout", out)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", main(["metrics", *argv])))
    thread.start()
    return out, thread, result


class LockHeldElsewhere:
    """The run's lock held by another process, as a live trainer holds it (a process does not
    see its own POSIX locks, so the test cannot hold it itself). ``release()`` is its death."""

    def __init__(self, run_dir):
        code = ("import sys; from tunedeck.core.rundir import RunDirectory; "
                "assert RunDirectory(sys.argv[1]).acquire_lock() is not None; "
                "print('locked', flush=True); sys.stdin.read()")
        self.child = subprocess.Popen([sys.executable, "-c", code, str(run_dir)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.child.stdout.readline() == "locked\n"

    def release(self):
        self.child.stdin.close()
        self.child.wait(timeout=30)


def test_follow_run_directory_until_end_event(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, RUNNER_EVENTS[:3])
    lock = LockHeldElsewhere(run_dir)  # a live trainer holds it
    try:
        out, thread, result = follow_in_thread(monkeypatch, str(run_dir), "--follow", "--json")
        out.wait_for('"iter":10')
        with EventWriter(run_dir / "metrics.jsonl") as writer:
            writer.append(RUNNER_EVENTS[3])
            out.wait_for('"iter":20')  # new lines show up while the run goes on
            writer.append(Save(iter=20, file="0000020_adapters.safetensors"))
            writer.append(End(state="stopped"))
        thread.join(20)
        assert not thread.is_alive() and result["code"] == 0
    finally:
        lock.release()
    kinds = [p["kind"] for p in json_lines(out.text)]
    assert kinds == ["start", "val", "train", "train", "save", "end"]


def test_follow_stops_when_status_says_the_run_is_over(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, RUNNER_EVENTS[:3])
    lock = LockHeldElsewhere(run_dir)
    out, thread, result = follow_in_thread(monkeypatch, str(run_dir), "--follow")
    out.wait_for("2.900")  # the row of iteration 10
    with EventWriter(run_dir / "metrics.jsonl") as writer:
        writer.append(RUNNER_EVENTS[3])
    # The trainer dies without writing an end event: its lock goes, "running" is stale.
    lock.release()
    thread.join(20)
    assert not thread.is_alive() and result["code"] == 0
    assert "    20       2.800" in out.text  # lines written before it ended are still read
    assert out.text.splitlines()[-1].startswith("iteration 20/100 · last loss 2.800")


def test_follow_a_growing_log_file_until_ctrl_c(tmp_path):
    log = tmp_path / "train.log"
    data = (LOGS / "v031_piped.log").read_bytes()
    half = data.index(b"Iter 15:")
    log.write_bytes(data[:half])
    tunedeck = Path(sys.executable).parent / "tunedeck"
    proc = subprocess.Popen([str(tunedeck), "metrics", str(log), "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=like_a_terminal)
    try:
        seen = []
        for line in proc.stdout:  # rows arrive while the command keeps following
            seen.append(line)
            if "saved 0000010_adapters.safetensors" in line:
                with open(log, "ab") as f:
                    f.write(data[half:])
            if "saved adapters.safetensors" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)  # generous: a loaded machine is slow at everything
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    rows = [line.split()[0] for line in seen if line.split()[0].isdigit()]
    assert rows == ["1", "5", "10", "15", "20", "25", "30"]
    assert rest.splitlines()[-1] == "iteration 30/30 · last loss 2.519 · best val 2.597 (iteration 30) · ETA done"


def test_following_a_log_shows_the_crash_once_the_output_stops(tmp_path):
    # The abort is held for a line that could add to it; a crashed process writes none, so the
    # pause itself lets it out, while the command still follows.
    log = tmp_path / "train.log"
    data = (LOGS / "v032_crash_metal_oom.log").read_bytes()
    abort = data.index(b"libc++abi")
    log.write_bytes(data[:abort])
    tunedeck = Path(sys.executable).parent / "tunedeck"
    proc = subprocess.Popen([str(tunedeck), "metrics", str(log), "--follow", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=like_a_terminal)
    deadline = threading.Timer(120, proc.kill)  # a generous bound: no error ever would hang
    deadline.start()
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["kind"] == "train" and event["iter"] == 20:
                with open(log, "ab") as f:
                    f.write(data[abort:])
            if event["kind"] == "error":
                break
        assert proc.poll() is None  # still following
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        deadline.cancel()
        proc.kill()
    assert event == {"kind": "error", "message": OOM, "advice": OOM_ADVICE}


def test_stdin_pipe(monkeypatch, capsys):
    read_fd, write_fd = os.pipe()
    data = (LOGS / "v032_pty.log").read_bytes()

    def writer():
        with os.fdopen(write_fd, "wb") as w:
            for i in range(0, len(data), 999):
                w.write(data[i:i + 999])
                w.flush()

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(read_fd, "rb") as r:
        monkeypatch.setattr(sys, "stdin", r)
        code = main(["metrics", "-", "--json"])
    thread.join()
    out = capsys.readouterr().out
    assert code == 0
    printed = json_lines(out)
    assert [p["iter"] for p in printed if p["kind"] == "train"] == [5, 10, 15, 20, 25, 30]
    assert printed[-1] == {"kind": "test", "loss": 2.653, "ppl": 14.202}


@pytest.mark.timeout(300)
def test_real_mlx_lm_run_piped_into_the_console_script(tiny_model, persona_data, tmp_path):
    (tmp_path / "lora.yaml").write_text(json.dumps({"lora_parameters": TINY_LORA}))  # YAML ⊃ JSON
    bin_dir = Path(sys.executable).parent
    lora = [str(bin_dir / "mlx_lm.lora"), "-c", str(tmp_path / "lora.yaml"),
            "--model", str(tiny_model), "--data", str(persona_data), "--train", "--test",
            "--iters", "30", "--steps-per-report", "5", "--steps-per-eval", "10",
            "--save-every", "10", "--num-layers", "2", "--batch-size", "4",
            "--learning-rate", str(TINY_LEARNING_RATE), "--adapter-path", str(tmp_path / "a")]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TTY_COMPATIBLE="1")
    trainer = subprocess.Popen(lora, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env)
    metrics = subprocess.run([str(bin_dir / "tunedeck"), "metrics", "-", "--follow", "--json"],
                             stdin=trainer.stdout, capture_output=True, text=True, timeout=280)
    trainer.stdout.close()
    assert trainer.wait(timeout=30) == 0
    assert metrics.returncode == 0, metrics.stderr
    printed = json_lines(metrics.stdout)
    assert printed[0] == {"kind": "start", "total_iters": 30}
    trains = [p for p in printed if p["kind"] == "train"]
    assert [p["iter"] for p in trains] == [5, 10, 15, 20, 25, 30]
    assert trains[-1]["loss"] < trains[0]["loss"]
    assert all(p["tokens_per_sec"] > 0 and p["trained_tokens"] > 0 for p in trains)
    assert "eta_s" in trains[0] and trains[-1]["eta_s"] == 0.0
    assert [p["iter"] for p in printed if p["kind"] == "val"] == [1, 10, 20, 30]
    assert [p["file"] for p in printed if p["kind"] == "save"] == [
        "0000010_adapters.safetensors", "0000020_adapters.safetensors",
        "0000030_adapters.safetensors"]
    assert printed[-1]["kind"] == "test" and printed[-1]["ppl"] > 1
    assert not any(p["kind"] == "progress" for p in printed)


# -- health findings --------------------------------------------------------------------------

DIVERGED = Health(iter=30, issue="diverging", severity="bad", evidence="train loss nan at iteration 30",
                  advice="lower the learning rate")


def test_a_runs_health_findings_are_lines_of_the_table_and_named_in_the_summary(tmp_path, capsys):
    run_dir = make_run(tmp_path, RUNNER_EVENTS + [DIVERGED])
    code, out, _ = run(capsys, run_dir)
    assert code == 0
    lines = out.splitlines()
    assert lines[-2].strip() == ("iter 30  BAD diverging: train loss nan at iteration 30 — "
                                 "lower the learning rate")
    assert "health bad diverging (iteration 30)" in lines[-1]
    # The recorded findings are printed once: no monitor of our own adds to a run's record.
    assert out.count("diverging") == 2


def _train_line(i, loss):
    return (f"Iter {i}: Train loss {loss}, Learning Rate 1.000e-04, It/sec 0.500, Tokens/sec 400.000, "
            f"Trained Tokens {i * 800}, Peak mem 3.200 GB\n")


def test_a_foreign_log_gets_findings_of_its_own(tmp_path, capsys):
    log = tmp_path / "plain.log"
    log.write_text("Starting training..., iters: 100\n"
                   + "".join(_train_line(i, 3.0 - i / 100) for i in (10, 20, 30))
                   + _train_line(40, "nan"))
    code, out, _ = run(capsys, log)
    assert code == 0
    found = [line.strip() for line in out.splitlines() if "BAD" in line or "WARN" in line]
    assert len(found) == 1 and found[0].startswith("iter 40  BAD diverging: ")
    assert " — " in found[0]  # with what to do
    code, out, _ = run(capsys, log, "--json")
    health = [p for p in json_lines(out) if p["kind"] == "health"]
    assert [(h["iter"], h["issue"], h["severity"]) for h in health] == [(40, "diverging", "bad")]
