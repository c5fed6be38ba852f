"""The cockpit's budgets: first frame, event-to-screen latency of a live run, plot redraw.

    .venv/bin/python bench/bench_tui.py [--runs 5] [--iters 300]

* First frame: ``tunedeck PROJECT`` started in a pseudo-terminal of 160x48, timed from the
  process start until the terminal has received the five pane titles and the footer. Measured on
  a project without runs (the Hyperparameters form first) and on one with a run (Training first).
* Latency: a real tiny-model run reporting every iteration (steps_per_report 1), followed by
  ``tunedeck PROJECT`` in a pseudo-terminal. For each train report: from the moment its line is
  in metrics.jsonl (the file's mtime, watched every millisecond) to the moment the terminal
  receives a status line (iteration, loss, ETA) and a plot (its x axis) that include it. The
  budget is for a run being watched: it counts the reports written once the app shows its first
  plot. The reports written while the app was still starting (importing, building its panes,
  reading the backlog, importing plotext) wait for that first frame, which has its own budget;
  their figure is printed beside, over every report. Beside
  it, the app's CPU time per report (from /proc/PID/stat), which a busy machine moves far less
  than the latencies: on 2 cores shared with the trainer, an app that needs more CPU per report
  than it gets falls behind, and its latency grows with the load.
* Plot redraw: the loss plot at 160x48 with 100k train points and 100 val points, redrawn
  (downsampling, smoothing off, plotext drawing the chart, its text turned into strips), once
  the first drawing is on screen (plotext is imported in a thread when a plot first has data).

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import pty
import re
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import NamedTuple, Union

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FIRST_FRAME_BUDGET_S = 1.0
LATENCY_BUDGET_MS = 250.0
REDRAW_BUDGET_MS = 30.0


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


# -- the project ---------------------------------------------------------------------------------
def make_project(root: Path, iters: int, **overrides) -> Path:
    from tests.tinymodel import build_tiny_model
    from tests.tui.projects import write_project

    model = root / "model"
    if not model.exists():
        build_tiny_model(model)
    return write_project(root / "project", model, iters=iters, **overrides)


def train(project: Path) -> None:
    from tests.tui.projects import train_to_the_end

    train_to_the_end(project)


# -- the app in a terminal ---------------------------------------------------------------------
def open_app(project: Path, home: Path, command: Union[str, list[str]] = "") -> tuple[int, subprocess.Popen]:
    """``tunedeck PROJECT`` (or ``command PROJECT``, a program or a program and its first
    arguments) in a pseudo-terminal of 160x48: the terminal's side to read from and the app's
    process."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "TUNEDECK_HOME": str(home)}
    program = [command] if isinstance(command, str) else command
    proc = subprocess.Popen([*(program if program[0] else [str(Path(sys.executable).with_name("tunedeck"))]),
                             str(project)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    return master, proc


def quit_app(master: int, proc: subprocess.Popen) -> None:
    os.write(master, b"\x11")  # ctrl+q
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    os.close(master)


# -- first frame --------------------------------------------------------------------------------
def first_frame_s(project: Path, home: Path, command: str = "") -> float:
    """Seconds from starting ``tunedeck PROJECT`` to the first complete frame in a terminal."""
    started = time.perf_counter()
    master, proc = open_app(project, home, command)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            if not ready:
                raise RuntimeError("no frame within 10 s:\n" + seen.decode(errors="replace")[-2000:])
            seen += os.read(master, 1 << 16)
            # Textual writes a frame in one go; its footer's palette key comes last.
            if b"Hyperparameters" in seen and b"Checkpoints" in seen and b"palette" in seen:
                return time.perf_counter() - started
    finally:
        quit_app(master, proc)


# -- latency ------------------------------------------------------------------------------------
class MetricsWatcher(threading.Thread):
    """Notes when each train report reached metrics.jsonl (by the file's mtime)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path = path
        self.written: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from tunedeck.core.file_tail import FileTail

        tail = FileTail(self.path)
        while not self.stop.is_set():
            try:
                st = os.stat(self.path)  # first: a line written before the read is dated early, so a latency errs long
            except OSError:
                time.sleep(0.001)
                continue
            for line in tail.read_lines():
                event = json.loads(line)
                if event.get("kind") == "train":
                    self.written.setdefault(event["iter"], st.st_mtime_ns / 1e9)
            time.sleep(0.001)


def process_cpu_s(pid: int) -> float:
    """User and system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Latencies(NamedTuple):
    """Milliseconds from each train report's line in metrics.jsonl to the terminal receiving it
    drawn: on the status line and on the plot, of the reports written once the first plot was on
    screen (``watched``) and of all of them."""

    status: list[float]
    plot: list[float]
    status_all: list[float]
    plot_all: list[float]
    app_cpu_s: float  # from the app's start to the run's end: the figure a busy machine moves least


def latencies_ms(project: Path, home: Path, command: str = "") -> Latencies:
    """The latencies of every train report of a run the app follows in a terminal."""
    from tunedeck.core.config import TrainConfig
    from tunedeck.core.runs import start_run

    config = TrainConfig.from_toml(project / "tunedeck.toml").resolve_paths(project)
    run, process = start_run(config, root=project / "runs")
    watcher = MetricsWatcher(run.metrics_jsonl)
    watcher.start()
    master, app = open_app(project, home, command)
    # The status line says "iter N/TOTAL"; the plots' x axis ends with the last iteration drawn.
    status_pattern = re.compile(rb"iter (\d+)/\d+")
    ticks_pattern = re.compile(rb"\d+ {5,}\d+ {5,}\d+ {5,}\d+ {5,}(\d+)")
    colours = re.compile(rb"\x1b\[[0-9;]*m")
    on_status: dict[int, float] = {}
    on_plot: dict[int, float] = {}
    tail = b""
    while process.poll() is None:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        now = time.time()
        chunk = os.read(master, 1 << 16)
        window = colours.sub(b"", tail + chunk)
        for found in status_pattern.finditer(window):
            on_status.setdefault(int(found.group(1)), now)
        for found in ticks_pattern.finditer(window):
            on_plot.setdefault(int(found.group(1)), now)
        tail = window[-256:]  # a number cut between two reads is found with the next one
    watcher.stop.set()
    app_cpu_s = process_cpu_s(app.pid)
    quit_app(master, app)

    def first_at_or_after(shown: dict[int, float], iteration: int):
        times = [t for i, t in shown.items() if i >= iteration]
        return min(times) if times else None

    first_plot_at = min(on_plot.values(), default=float("inf"))
    found = Latencies([], [], [], [], app_cpu_s)
    for iteration, written in watcher.written.items():
        watched = written >= first_plot_at
        for shown, every, once_watched in ((on_status, found.status_all, found.status),
                                           (on_plot, found.plot_all, found.plot)):
            if (t := first_at_or_after(shown, iteration)) is not None:
                every.append((t - written) * 1000)
                if watched:
                    once_watched.append((t - written) * 1000)
    return found


# -- plot redraw --------------------------------------------------------------------------------
async def redraw_ms(points: int = 100_000, repeats: int = 30) -> tuple[list[float], float]:
    """Each redraw's wall time, and the CPU time of one (less at the mercy of a busy machine)."""
    import math

    from textual.app import App

    from tunedeck.themes import THEMES
    from tunedeck.tui.panes.training.loss_plot import LossPlot
    from tunedeck.core.run_history import Series

    class PlotApp(App):
        def compose(self):
            for theme in THEMES:
                self.register_theme(theme)
            self.theme = THEMES[0].name
            yield LossPlot()

    train, val = Series(), Series()
    for i in range(1, points + 1):
        loss = 2.5 * math.exp(-i / (points / 4)) + 0.8 + 0.1 * math.sin(i / 7)
        train.add(i, loss)
        if i % (points // 100) == 0:
            val.add(i, loss + 0.05)
    app = PlotApp()
    times = []
    async with app.run_test(size=(160, 48)) as pilot:
        plot = app.query_one(LossPlot)
        plot.show(train, val, best=(val.iters[-1], val.values[-1]))
        while not plot.settled:  # the first drawing waits for the chart library's import
            await pilot.pause(0.05)
        cpu_started = time.thread_time()
        for _ in range(repeats):
            started = time.perf_counter()
            plot.redraw()
            times.append((time.perf_counter() - started) * 1000)
        cpu_ms = (time.thread_time() - cpu_started) * 1000 / repeats
    return times, cpu_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="first-frame measurements per case")
    parser.add_argument("--iters", type=int, default=300, help="iterations of the reporting run")
    parser.add_argument("--command", default="",
                        help="the program that opens the app, instead of tunedeck (another build of "
                             "it, to compare)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tui-") as tmp:
        root, home = Path(tmp), Path(tmp) / "home"
        os.environ["TUNEDECK_HOME"] = str(home)

        fresh = make_project(root / "fresh", iters=40)
        with_run = make_project(root / "with-run", iters=40)
        train(with_run)
        frames = {name: [first_frame_s(project, home, args.command) for _ in range(args.runs)]
                  for name, project in (("form first", fresh), ("Training first", with_run))}

        fast = make_project(root / "fast", iters=args.iters, steps_per_report=1, steps_per_eval=100,
                            save_every=100)
        load_before = os.getloadavg()[0]
        latencies = latencies_ms(fast, home, args.command)
        load_after = os.getloadavg()[0]
        redraws, redraw_cpu_ms = asyncio.run(redraw_ms())

    rows = []
    for name, values in frames.items():
        worst = max(values)
        rows.append((f"first frame in a 160x48 pty, {name} (median of {len(values)}, worst {worst:.2f} s)",
                     f"{statistics.median(values):.2f} s", f"≤ {FIRST_FRAME_BUDGET_S:.1f} s",
                     statistics.median(values) <= FIRST_FRAME_BUDGET_S))
    for what, values, every in (("status line (iteration, loss, ETA)", latencies.status, latencies.status_all),
                                ("loss plot", latencies.plot, latencies.plot_all)):
        rows.append((f"train report written → {what} on screen, p95 of the {len(values)} written once "
                     f"the first plot was on screen (median {statistics.median(values):.0f} ms)",
                     f"{p95(values):.0f} ms", f"≤ {LATENCY_BUDGET_MS:.0f} ms", p95(values) <= LATENCY_BUDGET_MS))
        rows.append((f"the same over all {len(every)} reports, those written while the app was starting "
                     f"included (median {statistics.median(every):.0f} ms)", f"{p95(every):.0f} ms", "—", None))
    rows.append((f"CPU of the app following that run, from its start to the run's end, per train report "
                 f"(load {load_before:.1f} before, {load_after:.1f} after)",
                 f"{1000 * latencies.app_cpu_s / max(1, len(latencies.status_all)):.0f} ms", "—", None))
    rows.append((f"loss plot redraw, 100k points, 160x48 (median of {len(redraws)}, "
                 f"p95 {p95(redraws):.1f} ms, {redraw_cpu_ms:.1f} ms of CPU each)",
                 f"{statistics.median(redraws):.1f} ms",
                 f"≤ {REDRAW_BUDGET_MS:.0f} ms", statistics.median(redraws) <= REDRAW_BUDGET_MS))

    command = f"`bench/bench_tui.py --runs {args.runs} --iters {args.iters}`"
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    for what, measured, budget, ok in rows:
        met = "—" if ok is None else "yes" if ok else "no"
        print(f"| {what} | {command} | {measured} | {budget} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
