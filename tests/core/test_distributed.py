"""One run on two ranks on 127.0.0.1 (ring backend, CPU): the real tiny model, really trained."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.core.runhelpers import events, wait_for, write_config
from tunedeck.core.cli import main
from tunedeck.core.errors import BadInput
from tunedeck.core.rundir import RunDirectory


def _status(run: Path) -> dict:
    return RunDirectory(run).read_status()


def _processes_of(run: Path) -> list[int]:
    """Every process on this machine whose command line names the run directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(run) in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _losses(run: Path) -> list[tuple]:
    return [(e["kind"], e["iter"], e["loss"]) for e in events(run) if e["kind"] in ("train", "val")]


def _max_difference(a: Path, b: Path) -> float:
    import mlx.core as mx

    x, y = mx.load(str(a)), mx.load(str(b))
    assert x.keys() == y.keys()
    return max(mx.abs(x[k] - y[k]).max().item() for k in x)


def _train_events(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [e for e in events(run) if e["kind"] == "train"] if path.exists() else []


def test_two_ranks_train_as_one_process_with_the_same_global_batch(tmp_path, tiny_model, persona_data,
                                                                     tunedeck):
    one = write_config(tmp_path / "one.toml", tiny_model, persona_data, iters=20)
    two = write_config(tmp_path / "two.toml", tiny_model, persona_data, iters=20, ranks=2)
    run_one, run_two = tmp_path / "one", tmp_path / "two"

    assert main(["train", str(one), "--run-dir", str(run_one)]) == 0
    assert main(["train", str(two), "--run-dir", str(run_two)]) == 0

    a, b = _losses(run_one), _losses(run_two)
    assert [x[:2] for x in a] == [x[:2] for x in b]
    assert max(abs(x[2] - y[2]) for x, y in zip(a, b)) <= 1e-5
    assert _max_difference(run_one / "adapters" / "adapters.safetensors",
                           run_two / "adapters" / "adapters.safetensors") <= 1e-5
    status = _status(run_two)
    assert status["state"] == "finished" and status["world_size"] == 2
    # Rank 0 owns the run directory; rank 1 wrote its own log and nothing else.
    assert (run_two / "train.rank1.log").read_text().strip()
    assert sorted(p.name for p in run_two.iterdir()) == sorted(
        [p.name for p in run_one.iterdir()] + ["ranks.json", "train.rank1.log"])
    assert events(run_two)[-1] == {"kind": "end", "state": "finished"}
    assert not _processes_of(run_two)

    code, out, _ = tunedeck("runs", "--root", tmp_path)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("two "))
    header = next(line for line in out.splitlines() if line.startswith("RUN "))
    assert row.split()[header.split().index("RANKS")] == "2"
    code, out, _ = tunedeck("runs", "--root", tmp_path, "--json")
    worlds = {json.loads(line)["name"]: json.loads(line)["world_size"] for line in out.splitlines()}
    assert worlds == {"one": 1, "two": 2}


def test_a_killed_rank_fails_the_run_by_name_and_leaves_no_process(tmp_path, tiny_model, persona_data):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=5000, ranks=2,
                       steps_per_report=2, steps_per_eval=1000, save_every=1000)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--detach"]) == 0
    wait_for(lambda: _train_events(run), what="the first training report")
    rank1 = _status(run)["rank_pids"][1]

    os.kill(rank1, signal.SIGKILL)

    wait_for(lambda: _status(run).get("state") == "failed" and not RunDirectory(run).is_locked(),
             what="the run to be on record as failed")
    error = _status(run)["error"]
    assert error.startswith("rank 1 (127.0.0.1) killed by SIGKILL"), error
    assert _status(run)["failed_rank"] == 1
    assert events(run)[-1] == {"kind": "end", "state": "failed"}
    wait_for(lambda: not _processes_of(run), timeout=30, what="every rank process to be gone")


def test_a_two_rank_run_killed_after_a_checkpoint_resumes_exactly(tmp_path, tiny_model, persona_data):
    settings = dict(iters=80, ranks=2, save_every=10, steps_per_report=10, steps_per_eval=40)
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, **settings)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["train", str(cfg), "--run-dir", str(straight)]) == 0

    assert main(["train", str(cfg), "--run-dir", str(killed), "--detach"]) == 0
    wait_for(lambda: (killed / "adapters" / "0000010_resume.json").exists(), what="checkpoint 10")
    os.kill(_status(killed)["rank_pids"][0], signal.SIGKILL)
    wait_for(lambda: not RunDirectory(killed).is_locked(), what="the killed run to end")
    assert _status(killed)["state"] == "failed"
    assert not _processes_of(killed)

    # The same world size only: another split of each batch is another gradient sum.
    toml = (killed / "run.toml").read_text()
    (killed / "run.toml").write_text(toml.replace("ranks = 2\n", ""))
    with pytest.raises(BadInput, match="trained with 2 ranks, resuming with 1"):
        _resume_refused(killed)
    (killed / "run.toml").write_text(toml)

    assert main(["resume", str(killed)]) == 0
    assert _max_difference(straight / "adapters" / "adapters.safetensors",
                           killed / "adapters" / "adapters.safetensors") <= 1e-5
    resumed = [e for e in events(killed) if e["kind"] == "resume"]
    assert resumed and resumed[-1]["iter"] % 10 == 0 and resumed[-1]["iter"] < 80
    assert events(killed)[-1] == {"kind": "end", "state": "finished"}


def _resume_refused(run: Path) -> None:
    from tunedeck.core.runs import resume_run

    resume_run(RunDirectory(run))


def test_a_batch_the_ranks_cannot_share_is_refused_before_anything_starts(tmp_path, tiny_model,
                                                                          persona_data, tunedeck):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, batch_size=3, ranks=2)
    code, out, err = tunedeck("train", cfg, "--run-dir", tmp_path / "run")
    assert code == 2
    assert err.strip().splitlines() == [
        f"tunedeck: error: {cfg}:5: batch_size: 3 does not divide by the 2 ranks (each rank "
        "takes batch_size / ranks samples); use a multiple of 2"]
    assert not (tmp_path / "run").exists()


def test_stop_ends_every_rank(tmp_path, tiny_model, persona_data, tunedeck):
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=5000, ranks=2,
                       steps_per_report=2, steps_per_eval=1000, save_every=1000)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--detach"]) == 0
    wait_for(lambda: _train_events(run), what="the first training report")
    pids = _status(run)["rank_pids"]

    code, out, _ = tunedeck("stop", run, "--timeout", "120")

    assert code == 0 and "stopped" in out
    assert _status(run)["state"] == "stopped"
    assert not any(Path(f"/proc/{pid}").exists() and pid in _processes_of(run) for pid in pids)
    assert not _processes_of(run)
    assert events(run)[-1] == {"kind": "end", "state": "stopped"}
    assert "[tunedeck] run stopped" in (run / "train.rank1.log").read_text()


def test_remote_hosts_are_checked_before_start_each_refusal_naming_its_host(tmp_path, monkeypatch):
    """Through an ssh that runs the probe here ("mac3") or cannot connect ("mac2"): the ssh
    itself cannot be tested on one machine, the answers to it can."""
    from tunedeck.core.distributed import Layout, RankPlace, check_hosts

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(
        "#!/bin/bash\n"
        "for host; do :; done\n"  # the last argument is the command; the one before, the host
        "args=(\"$@\"); host=${args[-2]}\n"
        "if [ \"$host\" = mac2 ]; then echo 'ssh: connect to host mac2 port 22: Connection refused' >&2; exit 255; fi\n"
        "exec bash -c \"${args[-1]}\"\n")
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    here = RankPlace(0, "127.0.0.1", "10.0.0.1")

    with pytest.raises(BadInput) as refused:
        check_hosts(Layout("ring", [here, RankPlace(1, "mac2", "10.0.0.2")]), [str(tmp_path)])
    assert str(refused.value).startswith("hosts: mac2: not reachable by ssh (ssh: connect to host "
                                         "mac2 port 22: Connection refused)")

    mac3 = Layout("ring", [here, RankPlace(1, "mac3", "10.0.0.3")])
    check_hosts(mac3, [str(tmp_path)])  # same versions (it is this machine), same paths
    with pytest.raises(BadInput, match=f"hosts: mac3: {tmp_path}/model: not found there"):
        check_hosts(mac3, [str(tmp_path), str(tmp_path / "model")])
    with pytest.raises(BadInput, match="hosts: mac3: .*/python-elsewhere does not run there"):
        check_hosts(mac3, [str(tmp_path)], python=str(tmp_path / "python-elsewhere"))


def test_the_status_lines_show_the_ranks_and_the_tokens_per_second_of_them_all(tmp_path):
    from tunedeck.core import events as ev
    from tunedeck.core.commands.status_line import StatusLine
    from tunedeck.core.status_text import RunFigures, status_figures

    run = RunDirectory(tmp_path)
    run.update_status(state="running", total_iters=100, world_size=2)
    writer = ev.EventWriter(run.metrics_jsonl)
    writer.append(ev.Train(iter=10, loss=2.5, tokens_per_sec=1234.0))
    writer.close()

    assert StatusLine(run).text(now=0.0).split(" · ")[:4] == [
        "iter 10/100 (10%)", "loss 2.500", "2 ranks", "1.2k tok/s total"]
    parts = status_figures(RunFigures(state="running", iteration=10, total_iters=100,
                                      tokens_per_sec=1234.0, ranks=2), now=0.0)
    assert parts[1:3] == ["2 ranks", "1.2k tok/s total"]
    one = status_figures(RunFigures(state="running", tokens_per_sec=1234.0), now=0.0)
    assert one == ["1.2k tok/s"]


def _fake_remote_tools(bin_dir: Path) -> None:
    """An ssh that runs the command on this machine, and an scp with nothing to copy (the
    "remote" host shares this filesystem): the remote path minus the network."""
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text("#!/bin/bash\nargs=(\"$@\")\nexec bash -c \"${args[-1]}\"\n")
    (bin_dir / "scp").write_text("#!/bin/bash\nexit 0\n")
    for tool in ("ssh", "scp"):
        (bin_dir / tool).chmod(0o755)


def test_a_rank_on_another_host_runs_over_ssh_and_its_output_comes_back(tmp_path, tiny_model,
                                                                       persona_data, monkeypatch):
    _fake_remote_tools(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([{"ssh": "127.0.0.1", "ips": ["127.0.0.1"]},
                                    {"ssh": "mac2", "ips": ["127.0.0.1"]}]))
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=10,
                       hosts=str(hostfile))
    run = tmp_path / "run"

    assert main(["train", str(cfg), "--run-dir", str(run)]) == 0

    status = _status(run)
    assert status["state"] == "finished" and status["rank_hosts"] == ["127.0.0.1", "mac2"]
    log = (run / "train.rank1.log").read_text()
    assert "[tunedeck] rank 1 of 2 (ring)" in log and "tunedeck-beat" not in log
    assert "[tunedeck] run finished at iteration 10" in log


def test_a_rank_that_goes_silent_fails_the_run_by_name(tmp_path, tiny_model, persona_data,
                                                       monkeypatch):
    # Silence is judged against the steps seen so far, never less than this floor; a stopped
    # rank (SIGSTOP) is silent without exiting, like a Mac gone to sleep.
    monkeypatch.setenv("TUNEDECK_RANK_SILENCE_S", "20")
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=5000, ranks=2,
                       steps_per_report=2, steps_per_eval=1000, save_every=1000)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--detach"]) == 0
    wait_for(lambda: len(_train_events(run)) >= 3, what="training reports")
    rank1 = _status(run)["rank_pids"][1]

    os.kill(rank1, signal.SIGSTOP)

    wait_for(lambda: _status(run).get("state") == "failed" and not RunDirectory(run).is_locked(),
             timeout=300, what="the silent run to be on record as failed")
    error = _status(run)["error"]
    assert error.startswith("rank 1 (127.0.0.1) stopped reporting: nothing for "), error
    wait_for(lambda: not _processes_of(run), timeout=30, what="every rank process to be gone")


def test_an_unreachable_host_refuses_the_run_in_one_line(tmp_path, tiny_model, persona_data,
                                                         monkeypatch, tunedeck):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text("#!/bin/bash\necho 'ssh: Could not resolve hostname mac2' >&2\n"
                                 "exit 255\n")
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([{"ssh": "127.0.0.1", "ips": ["10.0.0.1"]},
                                    {"ssh": "mac2", "ips": ["10.0.0.2"]}]))
    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, hosts=str(hostfile))

    code, _, err = tunedeck("train", cfg, "--run-dir", tmp_path / "run")

    assert code == 2
    assert err.strip().splitlines() == [
        "tunedeck: error: hosts: mac2: not reachable by ssh (ssh: Could not resolve hostname "
        "mac2); set up key-based ssh from this machine to every host"]
    assert not (tmp_path / "run").exists()  # refused before anything is written
