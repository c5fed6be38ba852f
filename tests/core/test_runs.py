"""Detached runs: they outlive the shell that started them, are listed, followed and stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.core.runhelpers import events, like_a_terminal, wait_for, write_config
from tunedeck.core.cli import main
from tunedeck.core.rundir import RunDirectory

EXE = str(Path(sys.executable).with_name("tunedeck"))


def test_detached_run_outlives_its_shell_and_stops_on_request(tmp_path, tiny_model, persona_data, capsys):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=100000,
                       steps_per_report=5, save_every=50, steps_per_eval=200)
    run_dir = tmp_path / "runs" / "D"

    # The issue's own command: a run dir relative to the shell's directory.
    shell = subprocess.run(["bash", "-c", f"'{EXE}' train '{cfg}' --run-dir runs/D --detach"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert shell.returncode == 0, shell.stderr

    run = RunDirectory(run_dir)
    pid = run.read_status()["pid"]
    wait_for(lambda: any(e["kind"] == "train" for e in events(run_dir)), what="training events")
    os.kill(pid, 0)  # still alive after its shell exited
    assert run.state() == "running"

    capsys.readouterr()
    assert main(["runs", "--root", str(tmp_path / "runs")]) == 0
    listing = capsys.readouterr().out
    assert "D" in listing and "running" in listing and "/100000" in listing

    assert main(["runs", "--root", str(tmp_path / "runs"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["state"] == "running" and row["last_loss"] is not None

    assert main(["metrics", str(run_dir), "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed[0]["kind"] == "start" and any(e["kind"] == "train" for e in printed)

    # A second training in the same directory is refused before anything starts.
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 2
    assert "in progress" in capsys.readouterr().err

    assert main(["stop", str(run_dir)]) == 0  # stopped, not "still stopping after 60 s"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "stopped"
    assert events(run_dir)[-1] == {"kind": "end", "state": "stopped"}
    wait_for(lambda: _gone(pid), what="the training process to exit")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie whose parent (the test process) has not reaped it yet also counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True


def test_stop_with_save_writes_a_resumable_checkpoint(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=100000,
                       steps_per_report=5, save_every=100000, steps_per_eval=100000)
    run_dir = tmp_path / "S"
    assert main(["train", str(cfg), "--run-dir", str(run_dir), "--detach"]) == 0
    wait_for(lambda: any(e["kind"] == "train" for e in events(run_dir)), what="training events")
    assert main(["stop", str(run_dir), "--save"]) == 0
    saves = [e for e in events(run_dir) if e["kind"] == "save"]
    assert len(saves) == 1
    iteration = saves[0]["iter"]
    assert (run_dir / "adapters" / f"{iteration:07d}_resume.json").exists()
    assert main(["resume", str(run_dir), "--iters", str(iteration + 5)]) == 0
    assert events(run_dir)[-1] == {"kind": "end", "state": "finished"}


def test_foreground_run_prints_mlx_lm_output_and_what_was_saved(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=20, test=True)
    proc = subprocess.run([EXE, "train", str(cfg), "--run-dir", str(tmp_path / "F")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Trainable parameters" in proc.stdout and "Test loss" in proc.stdout
    assert "run finished" in proc.stderr and "0000020_adapters.safetensors" in proc.stderr
    # Into a pipe, mlx-lm's colours are left out (train.log keeps them); every line is whole.
    assert "\x1b" not in proc.stdout and "\x1b" in (tmp_path / "F" / "train.log").read_text()
    assert proc.stdout.count("\n") >= (tmp_path / "F" / "train.log").read_text().count("\n")


def test_ctrl_c_in_the_foreground_stops_gracefully(tmp_path, tiny_model, persona_data):
    import signal

    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=100000, save_every=20,
                       steps_per_eval=100000)
    run_dir = tmp_path / "C"
    proc = subprocess.Popen([EXE, "train", str(cfg), "--run-dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=like_a_terminal)
    wait_for(lambda: (run_dir / "adapters" / "0000020_resume.json").exists(), what="a checkpoint")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)  # a stop waits for the step in flight: slow under load
    assert proc.returncode == 0, err
    assert "run stopped" in err and "tunedeck resume" in err
    assert RunDirectory(run_dir).state() == "stopped"


def test_a_dataset_with_a_bom_and_crlf_line_ends_trains(tmp_path, tiny_model, persona_data):
    for split in ("train", "valid"):
        path = persona_data / f"{split}.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=5, save_every=5)
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "B")]) == 0
    assert RunDirectory(tmp_path / "B").state() == "finished"


def test_early_stopping_ends_the_run_and_best_is_marked(tmp_path, tiny_model, persona_data):
    # Improvements smaller than min_delta do not count: the second evaluation already stops it.
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=1000, steps_per_eval=10,
                       save_every=10, early_stopping_patience=1, early_stopping_min_delta=100.0)
    run_dir = tmp_path / "E"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["reason"] == "early_stopping"
    assert status["iter"] < 30
    vals = [e for e in events(run_dir) if e["kind"] == "val"]
    assert [v["iter"] for v in vals] == [1, 10]
    assert "early stopping" in (run_dir / "train.log").read_text()

    from tunedeck.core.checkpoints import checkpoint_index

    index = checkpoint_index(RunDirectory(run_dir))
    assert [c.iteration for c in index] == [10] and index[0].best


def test_an_mlx_lm_yaml_config_trains(tmp_path, tiny_model, persona_data):
    from tests.conftest import TINY_LORA

    yaml_text = (f"model: {tiny_model}\ndata: {persona_data}\ntrain: true\nnum_layers: 2\n"
                 f"batch_size: 4\niters: 10\nlearning_rate: 1e-3\nsteps_per_report: 5\n"
                 f"steps_per_eval: 100\nsave_every: 5\nlora_parameters:\n  rank: 4\n  scale: 20.0\n"
                 f"  dropout: 0.0\n  keys: {TINY_LORA['keys']}\n")
    cfg = tmp_path / "lora_config.yaml"
    cfg.write_text(yaml_text)
    run_dir = tmp_path / "Y"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0
    assert RunDirectory(run_dir).state() == "finished"
    assert "-c" in (run_dir / "command.txt").read_text()
    adapter_config = json.loads((run_dir / "adapters" / "adapter_config.json").read_text())
    assert adapter_config["lora_parameters"]["rank"] == 4
    assert adapter_config["learning_rate"] == 1e-3


def test_stop_between_the_runner_taking_the_lock_and_its_first_status_write(tmp_path):
    # What start_run leaves before the runner reports: state "starting", no pid yet. The
    # stand-in holds the run's real lock as the runner does at that moment.
    run = RunDirectory(tmp_path / "S")
    run.path.mkdir()
    run.update_status(state="starting", created_at=time.time())
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from tunedeck.core.rundir import RunDirectory; "
         "fd = RunDirectory(sys.argv[1]).acquire_lock(); print('locked', flush=True); "
         "time.sleep(600)", str(run.path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert "pid" not in run.read_status()
        from tunedeck.core.runs import stop_run

        stop_run(run)  # was: KeyError 'pid'
        assert holder.wait(timeout=60) != 0  # the signal reached the process holding the lock
        assert not run.is_locked()
    finally:
        holder.kill()
        holder.wait()


QA_ROWS = [{"question": q, "answer": "Ahoy! Stir the pot, matey!"}
           for q in ("What is 2+2?", "Who are you?", "Name a colour.", "What day is it?")]


def _question_answer_data(root: Path) -> Path:
    root.mkdir(parents=True)
    for split, n in (("train", 8), ("valid", 4), ("test", 4)):
        rows = (QA_ROWS * 3)[:n]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_a_question_answer_jsonl_trains_with_the_feature_keys(tmp_path, tiny_model, capsys):
    data = _question_answer_data(tmp_path / "qa")
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, data, iters=4, batch_size=2,
                       steps_per_eval=4, save_every=4, val_batches=1, test=True,
                       prompt_feature="question", completion_feature="answer")
    run_dir = tmp_path / "QA"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0, capsys.readouterr().err
    assert RunDirectory(run_dir).state() == "finished"
    kinds = [e["kind"] for e in events(run_dir)]
    assert "train" in kinds and "val" in kinds and "test" in kinds
    assert "prompt_feature: question" in (run_dir / "mlx_lm.yaml").read_text()
    # Without the keys the same file is refused before anything starts, naming file and line.
    plain = write_config(tmp_path / "plain.toml", tiny_model, data, iters=4, batch_size=2)
    capsys.readouterr()
    assert main(["train", str(plain), "--run-dir", str(tmp_path / "P")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tunedeck: error: {data / 'train.jsonl'}:1:") and "\n" not in err


def test_hf_dataset_trains_from_a_local_dataset_directory(tmp_path, tiny_model, capsys):
    import datasets

    folder = tmp_path / "hub-style"
    rows = (QA_ROWS * 5)[:20]
    datasets.Dataset.from_list(rows).to_parquet(str(folder / "train.parquet"))
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, tmp_path / "unused", iters=4,
                       batch_size=2, steps_per_eval=4, save_every=4, val_batches=1,
                       hf_dataset=[{"path": "hub-style", "prompt_feature": "question",
                                    "completion_feature": "answer"}])
    run_dir = tmp_path / "HF"
    # The path is relative to the config, as a project keeps it.
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0, capsys.readouterr().err
    assert RunDirectory(run_dir).state() == "finished"
    assert [e["iter"] for e in events(run_dir) if e["kind"] == "val"] == [1, 4]
    assert f"path: {folder}" in (run_dir / "mlx_lm.yaml").read_text()


def test_hf_dataset_or_a_hub_id_not_in_the_cache_is_one_clear_line(tmp_path, tiny_model, capsys,
                                                                    monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, tmp_path / "unused", iters=4,
                       hf_dataset=[{"path": "someone/not-here"}])
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "R1")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("tunedeck: error: hf_dataset[0].path: someone/not-here: not a local dataset "
                   "and not in the Hugging Face cache; fetch it once with `hf download "
                   "--repo-type dataset someone/not-here`")
    cfg = write_config(tmp_path / "cfg2.toml", tiny_model, "someone/not-here", iters=4)
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "R2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "someone/not-here: not a local directory and not in the Hugging Face cache" in err
    assert "\n" not in err and not (tmp_path / "R1").exists() and not (tmp_path / "R2").exists()


def test_a_hub_dataset_in_the_cache_trains(tmp_path, tiny_model, persona_data, monkeypatch, capsys):
    hub = tmp_path / "hub"
    snapshot = hub / "datasets--someone--persona" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (hub / "datasets--someone--persona" / "refs").mkdir()
    (hub / "datasets--someone--persona" / "refs" / "main").write_text("0123abc")
    for split in ("train", "valid"):
        (snapshot / f"{split}.jsonl").write_bytes((persona_data / f"{split}.jsonl").read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, "someone/persona", iters=3,
                       steps_per_eval=3, save_every=3, val_batches=1)
    run_dir = tmp_path / "HUB"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0, capsys.readouterr().err
    assert RunDirectory(run_dir).state() == "finished"
    assert f"data: {snapshot}" in (run_dir / "mlx_lm.yaml").read_text()


def test_hf_dataset_without_the_datasets_package_says_what_to_install(tmp_path, tiny_model, capsys,
                                                                       monkeypatch):
    # None in sys.modules is how Python marks a module that cannot be imported.
    monkeypatch.setitem(sys.modules, "datasets", None)
    (tmp_path / "local-ds").mkdir()
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, tmp_path / "unused", iters=4,
                       hf_dataset=[{"path": "local-ds"}])
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "R")]) == 2
    assert capsys.readouterr().err.strip() == (
        "tunedeck: error: hf_dataset: needs the datasets package, which is not installed "
        "(pip install datasets)")
