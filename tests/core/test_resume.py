"""Runs that outlive their launcher and resume exactly, through the real commands."""

from __future__ import annotations

import json
import os
import signal


from tests.core.runhelpers import events, wait_for, write_config
from tunedeck.core.cli import main
from tunedeck.core.rundir import RunDirectory


def _adapters(path):
    import mlx.core as mx

    return mx.load(str(path))


def test_killed_run_resumes_to_the_same_adapters_as_a_straight_run(tmp_path, tiny_model, persona_data):
    schedule = {"name": "cosine_decay", "arguments": [1e-3, 300, 1e-5], "warmup": 20, "warmup_init": 0.0}
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=300, save_every=100,
                       steps_per_report=10, steps_per_eval=50, lr_schedule=schedule)
    run_a, run_b = tmp_path / "A", tmp_path / "B"

    assert main(["train", str(cfg), "--run-dir", str(run_a)]) == 0

    assert main(["train", str(cfg), "--run-dir", str(run_b), "--detach"]) == 0
    wait_for(lambda: (run_b / "adapters" / "0000100_resume.json").exists(), what="checkpoint 100")
    pid = json.loads((run_b / "status.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    # Its supervisor records the kill (see test_runner_reliability); the run stays resumable.
    wait_for(lambda: _state(run_b) == "failed" and not RunDirectory(run_b).is_locked(),
             what="the killed run to be on record as failed")

    assert main(["resume", str(run_b)]) == 0

    import mlx.core as mx
    final_a, final_b = _adapters(run_a / "adapters" / "adapters.safetensors"), _adapters(run_b / "adapters" / "adapters.safetensors")
    assert final_a.keys() == final_b.keys()
    worst = max(mx.abs(final_a[k] - final_b[k]).max().item() for k in final_a)
    assert worst <= 1e-5

    names = sorted(p.name for p in (run_b / "adapters").glob("*_adapters.safetensors"))
    assert names == ["0000100_adapters.safetensors", "0000200_adapters.safetensors",
                     "0000300_adapters.safetensors"]
    evs = events(run_b)
    resume = [e for e in evs if e["kind"] == "resume"]
    assert resume and resume[0]["iter"] == 100
    after = evs[evs.index(resume[0]):]
    train_iters = [e["iter"] for e in after if e["kind"] == "train"]
    assert train_iters[0] == 110 and train_iters[-1] == 300
    assert evs[-1] == {"kind": "end", "state": "finished"}


def _state(run):
    return RunDirectory(run).state()


def test_resume_from_an_earlier_checkpoint_moves_later_ones_aside(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=30)
    run = tmp_path / "R"
    assert main(["train", str(cfg), "--run-dir", str(run)]) == 0
    later = (run / "adapters" / "0000030_adapters.safetensors").read_bytes()

    assert main(["resume", str(run), "--checkpoint", "10", "--iters", "20"]) == 0

    aside = list((run / "adapters").glob("superseded-*/0000030_adapters.safetensors"))
    assert len(aside) == 1 and aside[0].read_bytes() == later
    assert (run / "adapters" / "0000020_adapters.safetensors").exists()


def test_extend_continues_past_the_planned_iterations(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=20)
    run = tmp_path / "R"
    assert main(["train", str(cfg), "--run-dir", str(run)]) == 0
    assert main(["resume", str(run), "--iters", "35"]) == 0
    names = sorted(p.name[:7] for p in (run / "adapters").glob("*_adapters.safetensors"))
    assert names == ["0000010", "0000020", "0000030", "0000035"]
    train_iters = [e["iter"] for e in events(run) if e["kind"] == "train"]
    assert train_iters[-1] == 35 and train_iters.count(20) == 1


def test_resume_of_a_finished_run_says_how_to_extend(tmp_path, tiny_model, persona_data, capsys):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=10)
    run = tmp_path / "R"
    assert main(["train", str(cfg), "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--iters" in err[0]


def test_best_is_accepted_for_resume(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=30)
    run = tmp_path / "R"
    assert main(["train", str(cfg), "--run-dir", str(run)]) == 0
    from tunedeck.core.checkpoints import checkpoint_index

    index = checkpoint_index(RunDirectory(run))
    best = [c for c in index if c.best]
    assert len(best) == 1
    assert best[0].val_loss == min(c.val_loss for c in index)
    assert all(c.resumable for c in index)


def test_a_deleted_checkpoint_is_gone_with_its_resume_state(tmp_path, tiny_model, persona_data):
    from tunedeck.core.checkpoints import checkpoint_index, delete_checkpoint

    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=20)
    run = RunDirectory(tmp_path / "R")
    assert main(["train", str(cfg), "--run-dir", str(run.path)]) == 0
    from tunedeck.core.probes import answers_file

    answers_file(run.adapters, 10).write_text("{}")  # as an answer check leaves it
    delete_checkpoint(run, 10)
    assert [c.iteration for c in checkpoint_index(run)] == [20]
    assert not list(run.adapters.glob("0000010_*"))


def test_resume_the_moment_a_run_says_stopped_waits_for_its_process_to_exit(
        tmp_path, tiny_model, persona_data, monkeypatch):
    """The status says "stopped" before the run's process has exited and let go of the lock (on a
    busy machine, seconds): r pressed then must resume, not refuse a run "still going"."""
    import subprocess
    import sys

    from tunedeck.core import runs

    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=20)
    run = RunDirectory(tmp_path / "R")
    assert main(["train", str(cfg), "--run-dir", str(run.path)]) == 0
    run.update_status(state="stopped")
    # A process exiting after its end is on record: it holds the lock until told to go.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tunedeck.core.rundir import RunDirectory; "
         "fd = RunDirectory(sys.argv[1]).acquire_lock(); print(fd, flush=True); sys.stdin.read()",
         str(run.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() != "None"
    assert run.is_locked()
    real_sleep = runs.time.sleep

    def exit_holder(seconds):
        if holder.poll() is None:
            holder.stdin.close()
            holder.wait()
        real_sleep(seconds)

    monkeypatch.setattr(runs.time, "sleep", exit_holder)
    assert main(["resume", str(run.path), "--iters", "30"]) == 0
    assert holder.returncode == 0
    assert (run.adapters / "0000030_adapters.safetensors").exists()
