"""The runner keeps its promises in the configurations users actually pick: accumulation with
dropout resumes exactly, a run that dies says why, a full disk is one line, reporting works."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.runhelpers import events, wait_for, write_config
from tunedeck.core.cli import main
from tunedeck.core.rundir import RunDirectory, atomic_path, write_atomic


def _adapters(path):
    import mlx.core as mx

    return mx.load(str(path))


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def _worst_difference(a: Path, b: Path) -> float:
    import mlx.core as mx

    first, second = _adapters(a), _adapters(b)
    assert first.keys() == second.keys()
    return max(mx.abs(first[k] - second[k]).max().item() for k in first)


def test_accumulation_with_dropout_resumes_exactly_after_a_kill(tmp_path, tiny_model, persona_data):
    from tests.conftest import TINY_LORA
    from tunedeck.core.resume_state import load_state

    # save_every 25 with accumulation 2: checkpoint 75 falls inside an accumulation step.
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=300, save_every=25,
                       grad_accumulation_steps=2, steps_per_report=25, steps_per_eval=100,
                       lora_parameters={**TINY_LORA, "dropout": 0.1})
    straight, killed = tmp_path / "A", tmp_path / "B"
    assert main(["train", str(cfg), "--run-dir", str(straight)]) == 0

    assert main(["train", str(cfg), "--run-dir", str(killed), "--detach"]) == 0
    wait_for(lambda: (killed / "adapters" / "0000075_adapters.safetensors").exists(), what="checkpoint 75")
    os.kill(_status(killed)["pid"], signal.SIGKILL)
    wait_for(lambda: RunDirectory(killed).state() == "failed" and not RunDirectory(killed).is_locked(),
             what="the killed run to be recorded as failed")
    assert main(["resume", str(killed)]) == 0

    assert _worst_difference(straight / "adapters" / "adapters.safetensors",
                             killed / "adapters" / "adapters.safetensors") <= 1e-5
    # 75 is mlx-lm's weights only; the resumable checkpoint is at the accumulation boundary.
    adapters = straight / "adapters"
    assert (adapters / "0000075_adapters.safetensors").exists()
    assert load_state(adapters, 75) is None
    assert load_state(adapters, 76) is not None and load_state(adapters, 50) is not None
    assert events(killed)[-1] == {"kind": "end", "state": "finished"}


def test_a_trainer_killed_by_a_signal_is_failed_with_its_cause(tmp_path, tiny_model, persona_data, capsys):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=100000, save_every=10)
    run_dir = tmp_path / "K"
    assert main(["train", str(cfg), "--run-dir", str(run_dir), "--detach"]) == 0
    wait_for(lambda: (run_dir / "adapters" / "0000010_resume.json").exists(), what="checkpoint 10")
    os.kill(_status(run_dir)["pid"], signal.SIGKILL)  # what the kernel's out-of-memory killer sends
    wait_for(lambda: RunDirectory(run_dir).state() == "failed" and not RunDirectory(run_dir).is_locked(),
             what="the failure on record")

    status = _status(run_dir)
    assert "SIGKILL" in status["error"] and "memory" in status["error"]
    errors = [e for e in events(run_dir) if e["kind"] == "error"]
    assert len(errors) == 1 and "SIGKILL" in errors[0]["message"] and errors[0]["advice"]
    assert events(run_dir)[-1] == {"kind": "end", "state": "failed"}

    capsys.readouterr()
    assert main(["runs", "--root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "failed" in listing and "SIGKILL" in listing
    # Still resumable from its last checkpoint.
    assert main(["resume", str(run_dir), "--iters", "15"]) == 0
    assert RunDirectory(run_dir).state() == "finished"


def test_stopping_the_printed_pid_stops_the_run(tmp_path, tiny_model, persona_data, capsys):
    """`tunedeck train --detach` prints the supervisor's pid; a `kill` of it stops the run gracefully."""
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=100000, save_every=10)
    run_dir = tmp_path / "P"
    capsys.readouterr()
    assert main(["train", str(cfg), "--run-dir", str(run_dir), "--detach"]) == 0
    printed = capsys.readouterr().out
    pid = int(printed.split("(pid ")[1].split(")")[0])
    wait_for(lambda: any(e["kind"] == "train" for e in events(run_dir)), what="training")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not RunDirectory(run_dir).is_locked(), what="the run to end")
    assert _status(run_dir)["state"] == "stopped"


def test_a_stop_after_a_checkpoint_that_never_comes_still_finishes_and_tests(tmp_path, tiny_model,
                                                                            persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=40, save_every=1000,
                       steps_per_report=1, test=True)
    run_dir = tmp_path / "S"
    assert main(["train", str(cfg), "--run-dir", str(run_dir), "--detach"]) == 0
    wait_for(lambda: any(e["kind"] == "train" for e in events(run_dir)), what="training")
    assert main(["stop", str(run_dir), "--after-checkpoint"]) == 0
    wait_for(lambda: not RunDirectory(run_dir).is_locked(), what="the run to end")

    kinds = [e["kind"] for e in events(run_dir)]
    assert _status(run_dir)["state"] == "finished"
    assert "test" in kinds and kinds[-1] == "end" and events(run_dir)[-1]["state"] == "finished"
    # The end is a numbered checkpoint, so the run can be extended.
    assert (run_dir / "adapters" / "0000040_resume.json").exists()


def test_early_stopping_runs_the_test_set(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=1000, steps_per_eval=10,
                       save_every=10, early_stopping_patience=1, early_stopping_min_delta=100.0, test=True)
    run_dir = tmp_path / "E"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0
    assert _status(run_dir)["reason"] == "early_stopping"
    assert [e["kind"] for e in events(run_dir)][-2:] == ["test", "end"]


def test_report_to_wandb_offline_records_the_losses(tmp_path, tiny_model, persona_data, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=20, steps_per_eval=10,
                       report_to="wandb", project_name="tunedeck-test")
    run_dir = tmp_path / "W"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0
    assert RunDirectory(run_dir).state() == "finished"

    runs = list((run_dir / "adapters" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = _wandb_history(next(runs[0].glob("*.wandb")))
    train_losses = [row["train_loss"] for row in logged if "train_loss" in row]
    val_losses = [row["val_loss"] for row in logged if "val_loss" in row]
    ours = events(run_dir)
    assert train_losses == pytest.approx([e["loss"] for e in ours if e["kind"] == "train"])
    assert val_losses == pytest.approx([e["loss"] for e in ours if e["kind"] == "val"])


def _wandb_history(path: Path) -> list[dict]:
    """The history rows of an offline wandb run file, read as wandb's sync would.

    The file is a LevelDB-style log (a 7-byte header, 32 KiB blocks of records with a 7-byte
    header each: crc, length, type) of wandb's own protobuf Records.
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, pieces, rows = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        pieces += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def _mount_tiny_disk(path: Path, size: str) -> bool:
    path.mkdir(parents=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def test_a_full_disk_is_one_line_with_the_last_checkpoint_and_no_leftovers(tmp_path, tiny_model,
                                                                          persona_data):
    disk = tmp_path / "disk"
    if not _mount_tiny_disk(disk, "1500k"):
        pytest.skip("needs root and tmpfs to make a small filesystem")
    try:
        cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=100000, save_every=20,
                           steps_per_report=20, steps_per_eval=100000)
        run_dir = disk / "R"
        code = subprocess.run([str(Path(sys.executable).with_name("tunedeck")), "train", str(cfg),
                               "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=600)
        assert code.returncode == 1
        status = _status(run_dir)
        assert status["state"] == "failed" and "disk full" in status["error"]
        assert str(disk) in status["error"] and "tunedeck resume" in status["error"]
        last = status["last_checkpoint"]
        assert f"checkpoint is {last}" in status["error"]
        from tunedeck.core.resume_state import load_state

        assert load_state(run_dir / "adapters", last) is not None
        # No temporary file and no torn checkpoint is left behind.
        assert not [p.name for p in run_dir.rglob("*") if ".tmp" in p.name]
        numbered = {int(p.name[:7]) for p in (run_dir / "adapters").glob("[0-9]*_*")}
        assert max(numbered) == last
        lines = [line for line in code.stdout.splitlines() + code.stderr.splitlines() if "disk full" in line]
        assert lines and "Traceback" not in code.stdout + code.stderr
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_probe_never_makes_a_starting_run_find_its_lock_busy(tmp_path):
    run = RunDirectory(tmp_path / "L")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tunedeck.core.rundir import RunDirectory; "
         f"r = RunDirectory({str(run.path)!r}); fd = r.acquire_lock(); print(fd is not None, flush=True); "
         "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert run.is_locked() and run.lock_holder() == holder.pid
    finally:
        holder.communicate("")
    assert not run.is_locked()
    # Probing holds nothing: with probes going on, a runner still gets the lock every time.
    for _ in range(200):
        assert not run.is_locked()
    fd = run.acquire_lock()
    assert fd is not None
    os.close(fd)


def test_atomic_writes_keep_the_mode_and_leave_nothing_on_failure(tmp_path):
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    write_atomic(atomic, "x")
    assert (atomic.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)

    os.chmod(atomic, 0o640)
    write_atomic(atomic, "y")
    assert (atomic.stat().st_mode & 0o777) == 0o640 and atomic.read_text() == "y"

    with pytest.raises(RuntimeError):
        with atomic_path(atomic) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer failed")
    assert atomic.read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "plain.txt"]
