"""Idle CPU of the app following a quiet run: what an open cockpit costs a laptop on battery.

    .venv/bin/python bench/bench_idle.py [--seconds 20] [--settle 3]

``tunedeck PROJECT`` is started in a pseudo-terminal of 160x48 on a project whose run is quiet,
and left alone: the Training pane follows the run, nobody types. After the first frame and a
settling time (the panes out of sight are built after the first frame), the CPU time the
process used (user + system, all its threads, from /proc/PID/stat) is read over ``--seconds``,
and with it how often its threads woke up (context switches, /proc/PID/task/*/status).

Each is measured twice: before, the app with its follower polling every 50 ms as it did before
watchfiles (``--as-polling-app``: this script opens the app so, with RunFollower.updates told to
poll every 50 ms without events), and after, the app as it is.

Two quiet runs, both real runs of the tiny model:

* finished: trained to the end; nothing will ever be written to it again.
* running, quiet: a run in the middle of its training, its processes stopped with SIGSTOP
  after the first report. It holds its lock and says "running", like a run in a long
  validation pause, and writes nothing. (Resumed and stopped after the measurement.)

Prints a markdown table. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_tui import open_app, quit_app

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

IDLE_CPU_BUDGET_PERCENT = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Start-up is over once a window of --settle seconds used less than this of a core.
SETTLED_PERCENT = 10.0
SETTLE_CAP_S = 180.0
OLD_POLL_S = 0.05  # the follower's pace before watchfiles


def make_project(root: Path, model: Path, **overrides) -> Path:
    from tests.tui.projects import write_project

    return write_project(root, model, **overrides)


def quiet_running_run(project: Path, deadline_s: float = 300.0):
    """A real run stopped (SIGSTOP) right after its first train report; returns its process."""
    from tunedeck.core.config import TrainConfig
    from tunedeck.core.runs import start_run

    config = TrainConfig.from_toml(project / "tunedeck.toml").resolve_paths(project)
    run, process = start_run(config, root=project / "runs")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            lines = run.metrics_jsonl.read_text().splitlines()
        except OSError:
            lines = []
        if any(json.loads(line).get("kind") == "train" for line in lines if line.endswith("}")):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("the run did not report in time:\n" + run.train_log.read_text()[-2000:])
    # The supervisor and its trainer share a process group (the run's own session).
    os.killpg(os.getpgid(process.pid), signal.SIGSTOP)
    return process


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of the process and all its threads, in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def cpu_ns(pid: int) -> int:
    """CPU time of the process's live threads in nanoseconds (the scheduler's own count, exact
    where the ticks of /proc/PID/stat are samples of 10 ms: 0.05 % of a core over 20 s)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue  # a thread that ended between the listing and the read
    return total


def wakeups(pid: int) -> int:
    """Context switches of the process's live threads: how often they were put to sleep and woken."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended between the listing and the read
    return total


def idle_cpu(command, project: Path, home: Path, seconds: float,
             settle: float) -> tuple[float, float, float]:
    """(CPU % of one core, wake-ups per second, seconds it took to settle) of the app left
    alone on ``project``."""
    master, app = open_app(project, home, command)
    seen = bytearray()
    framed = threading.Event()
    done = threading.Event()

    def drain() -> None:
        # The terminal is read all along (a full pty would block the app's writes).
        while not done.is_set():
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:
                    return
                if not framed.is_set():
                    seen.extend(data)
                    if b"Checkpoints" in seen and b"palette" in seen:
                        framed.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not framed.wait(60):
            raise RuntimeError("no frame within 60 s:\n" + seen.decode(errors="replace")[-2000:])
        settled_after = settle_down(app.pid, settle)
        used, woken, started = cpu_ns(app.pid), wakeups(app.pid), time.monotonic()
        time.sleep(seconds)
        used, woken = cpu_ns(app.pid) - used, wakeups(app.pid) - woken
        elapsed = time.monotonic() - started
    finally:
        done.set()
        reader.join(timeout=5)
        quit_app(master, app)
    return used / 1e9 / elapsed * 100, woken / elapsed, settled_after


def settle_down(pid: int, window: float, cap: float = SETTLE_CAP_S) -> float:
    """Seconds until the app's start-up work is over: the first ``window`` seconds in which it
    used under SETTLED_PERCENT of a core. (The panes out of sight and the Hyperparameters form
    are built after the first frame, one piece per frame: seconds of work on a busy machine.)"""
    started = time.monotonic()
    while time.monotonic() - started < cap:
        ticks = cpu_ticks(pid)
        time.sleep(window)
        if (cpu_ticks(pid) - ticks) / CLOCK_TICKS / window * 100 < SETTLED_PERCENT:
            break
    return time.monotonic() - started


def polling_app(project: str) -> int:
    """The app with its follower polling every 50 ms, without events: how it followed runs
    before watchfiles."""
    from tunedeck.core.run_follower import RunFollower
    from tunedeck.tui.launch import main as tunedeck

    updates = RunFollower.updates

    def polling(self, cancelled, **_options):
        return updates(self, cancelled, poll_s=OLD_POLL_S, ended_poll_s=OLD_POLL_S, events=False)

    RunFollower.updates = polling  # type: ignore[method-assign]
    sys.argv = ["tunedeck", project]
    return tunedeck()


def main() -> int:
    if sys.argv[1:2] == ["--as-polling-app"]:
        return polling_app(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the CPU time is counted")
    parser.add_argument("--settle", type=float, default=3.0,
                        help=f"the app has settled after this many seconds under {SETTLED_PERCENT}%% of a core")
    parser.add_argument("--command", default="",
                        help="the program that opens the app, instead of tunedeck (another build of it, to compare)")
    args = parser.parse_args()

    from tests.tinymodel import build_tiny_model
    from tests.tui.projects import train_to_the_end

    when_text = {"before": "the follower polling every 50 ms", "after": "watchfiles"}
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        root, home = Path(tmp), Path(tmp) / "home"
        os.environ["TUNEDECK_HOME"] = str(home)
        model = root / "model"
        build_tiny_model(model)

        before = [sys.executable, str(Path(__file__).resolve()), "--as-polling-app"]
        finished = make_project(root / "finished", model, iters=20)
        train_to_the_end(finished)
        measured = {}
        for when, command in (("before", before), ("after", args.command)):
            measured[f"finished ({when}: {when_text[when]})"] = idle_cpu(
                command, finished, home, args.seconds, args.settle)

        paused = make_project(root / "paused", model, iters=100_000, steps_per_report=1,
                              steps_per_eval=100_000, save_every=100_000)
        process = quiet_running_run(paused)
        try:
            for when, command in (("before", before), ("after", args.command)):
                measured[f"running, quiet (stopped after its first report; {when}: {when_text[when]})"] = \
                    idle_cpu(command, paused, home, args.seconds, args.settle)
        finally:
            group = os.getpgid(process.pid)
            os.killpg(group, signal.SIGCONT)
            os.killpg(group, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(group, signal.SIGKILL)
                process.wait()

    command = "`bench/bench_idle.py`"
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    for case, (percent, per_second, settled) in measured.items():
        print(f"| idle CPU of the app following a {case} run, 160x48, {args.seconds:.0f} s "
              f"({per_second:.0f} wake-ups/s; settled {settled:.0f} s after the first frame) | "
              f"{command} | {percent:.2f}% of one core | "
              f"≤ {IDLE_CPU_BUDGET_PERCENT}% | {'yes' if percent <= IDLE_CPU_BUDGET_PERCENT else 'no'} |")
    print()
    print(f"CPU time of the app's threads from /proc/PID/task/*/schedstat (nanoseconds) over "
          f"{args.seconds:.0f} s, once the app has settled (the first {args.settle:.0f} s after "
          f"the first frame under {SETTLED_PERCENT}% of a core); wake-ups are the voluntary and "
          f"involuntary context switches of the app's threads. Load average (1 min) at the end: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
