"""The form's budget: keystroke → screen in Hyperparameters, with epochs set and a 1 GB train.jsonl.

    .venv/bin/python bench/bench_form_keys.py [--gb 1.0] [--keys 40]

``tunedeck PROJECT`` runs in a pseudo-terminal of 160x48 on a project whose tunedeck.toml sets
``epochs`` and whose data/train.jsonl is ``--gb`` gigabytes (written in a temporary directory,
deleted at the end). Once the form shows the iterations the epochs amount to (the rows are
counted once, in a worker), tab goes through the fields (each tab waits for that field's help
line) to batch_size, and keys go in one at a time: "2" (batch 42), then backspace (batch 4), and
so on. Each changes the iterations, so each must redraw the command line. A key's time runs
from writing it to the terminal until the terminal has received the command line with the new
``--iters``: the updated screen, drawn.

Twice: at once, while the Data pane is still checking the 1 GB train.jsonl in worker processes
(what a user who opens the app and types sees), and again once that check has finished. Also
printed: the app's own CPU time per key (its CPU time over the keys, less what it spends idle
over as long), which the load of the machine does not change much, and how long one count of
the file takes (what every key cost when the command preview counted train.jsonl itself).

Prints a markdown table.
"""

from __future__ import annotations

import argparse
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEY_BUDGET_MS = 50.0
EPOCHS = 1
COLOURS = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


def make_project(root: Path, gigabytes: float) -> tuple[Path, int]:
    """A project with epochs set and a train.jsonl of ``gigabytes``; returns it and its rows."""
    from tests.tinymodel import build_tiny_model, write_persona_dataset

    model = root / "model"
    build_tiny_model(model)
    project = root / "project"
    data = write_persona_dataset(project / "data")
    row = json.dumps({"messages": [{"role": "user", "content": "What is the capital of France? " * 4},
                                   {"role": "assistant", "content": "Paris. " * 20}]}) + "\n"
    block = row.encode() * 10_000
    target = int(gigabytes * 1e9)
    rows = 0
    with open(data / "train.jsonl", "wb") as f:
        while f.tell() < target:
            f.write(block)
            rows += 10_000
    (project / "tunedeck.toml").write_text(
        f'name = "bench"\nmodel = "{model}"\ndata = "data"\nepochs = {EPOCHS}\nbatch_size = 4\n'
        "num_layers = 2\n")
    return project, rows


def count_seconds(project: Path) -> float:
    from tunedeck.core.config import TrainConfig

    config = TrainConfig.from_toml(project / "tunedeck.toml").resolve_paths(project)
    started = time.perf_counter()
    config.count_train_rows()
    return time.perf_counter() - started


class Terminal:
    def __init__(self, project: Path, home: Path):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "TUNEDECK_HOME": str(home)}
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        self.proc = subprocess.Popen([str(Path(sys.executable).with_name("tunedeck")), str(project)],
                                     stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)

    def wait_for(self, patterns: list[bytes], timeout: float) -> tuple[bytes, float]:
        """Read until one of ``patterns`` arrives in what the terminal receives from now on;
        returns it and the time it arrived (perf_counter)."""
        seen = b""
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"none of {patterns!r} within {timeout} s:\n"
                                   + seen.decode(errors="replace")[-1500:])
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                seen = COLOURS.sub(b"", seen[-4096:] + os.read(self.master, 1 << 16))
                for pattern in patterns:
                    if pattern in seen:
                        return pattern, time.perf_counter()

    def press(self, key: bytes) -> float:
        sent = time.perf_counter()
        os.write(self.master, key)
        return sent

    def cpu_seconds(self) -> float:
        """The app's CPU time so far, all its threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def checking_data(self) -> bool:
        """Whether the Data pane's check of train.jsonl still has worker processes."""
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit() or b"scan_worker" not in (entry / "cmdline").read_bytes():
                    continue
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue  # it ended while being read
            if parent == self.proc.pid:
                return True
        return False

    def close(self) -> None:
        os.write(self.master, b"\x11")  # ctrl+q
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)


def focus_batch_size(term: Terminal) -> None:
    """Tab through the fields to batch_size; each tab waits for the help of the field it
    focused, so a slow frame never lets a tab go past it."""
    from tunedeck.core.config import FIELDS

    helps = {f"{spec.name}: {spec.help[:20]}".encode(): spec.name for spec in FIELDS}
    shown = None
    for _ in range(len(FIELDS) + 1):
        term.press(b"\t")
        # Another field's help: the line may be drawn twice for one field.
        shown, _ = term.wait_for([help for help in helps if help != shown], timeout=60)
        if helps[shown] == "batch_size":
            return
    raise RuntimeError("batch_size never got the focus")


def type_keys(term: Terminal, rows: int, keys: int) -> tuple[list[float], float]:
    """Latencies (ms) of ``keys`` keys into batch_size, and the app's CPU ms per key."""
    started, idle_from = term.cpu_seconds(), time.perf_counter()
    time.sleep(2.0)  # what the app spends idle (cursor blink, the Data pane's progress)
    idle_rate = (term.cpu_seconds() - started) / (time.perf_counter() - idle_from)
    latencies = []
    cpu_from, wall_from = term.cpu_seconds(), time.perf_counter()
    for i in range(keys):
        key, batch = (b"2", 42) if i % 2 == 0 else (b"\x7f", 4)
        sent = term.press(key)
        _, shown = term.wait_for([f"--iters {EPOCHS * rows // batch}".encode()], timeout=60)
        latencies.append((shown - sent) * 1000)
        time.sleep(0.05)  # a fast typist's pace, so one key's frame is not merged into the next
    spent = term.cpu_seconds() - cpu_from - idle_rate * (time.perf_counter() - wall_from)
    return latencies, max(0.0, spent) * 1000 / keys


def key_latencies_ms(project: Path, home: Path, rows: int, keys: int) -> dict:
    term = Terminal(project, home)
    try:
        # The epochs note comes once the worker has counted the rows.
        term.wait_for([f"= {EPOCHS * rows // 4} iterations".encode()], timeout=300)
        focus_batch_size(term)
        term.press(b"\x1b[F")  # End: the cursor after the "4"
        time.sleep(0.5)
        checking = term.checking_data()
        results = {"checking": (checking, os.getloadavg()[0], *type_keys(term, rows, keys))}
        deadline = time.monotonic() + 900
        while term.checking_data() and time.monotonic() < deadline:
            time.sleep(0.5)
        results["checked"] = (term.checking_data(), os.getloadavg()[0], *type_keys(term, rows, keys))
        return results
    finally:
        term.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0, help="size of train.jsonl")
    parser.add_argument("--keys", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-form-") as tmp:
        root = Path(tmp)
        print(f"writing a {args.gb:g} GB train.jsonl ...", file=sys.stderr, flush=True)
        project, rows = make_project(root, args.gb)
        counted = count_seconds(project)
        results = key_latencies_ms(project, root / "home", rows, args.keys)
    command = "`bench/bench_form_keys.py`"
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    for phase, title in (("checking", "while the Data pane checks train.jsonl"),
                         ("checked", "once the Data pane has checked it")):
        still_checking, load, latencies, cpu_ms = results[phase]
        if phase == "checking" and not still_checking:
            title = "right after opening (the Data pane's check had already finished)"
        worst = p95(latencies)
        print(f"| form keystroke → command line redrawn, epochs set, {args.gb:g} GB train.jsonl "
              f"({rows:,} rows), {len(latencies)} keys in a 160×48 pty, {title} (load {load:.1f}) "
              f"| {command} | p50 {statistics.median(latencies):.0f} ms, p95 {worst:.0f} ms; "
              f"app CPU {cpu_ms:.1f} ms per key | p95 ≤ {KEY_BUDGET_MS:.0f} ms | "
              f"{'yes' if worst <= KEY_BUDGET_MS else 'no'} |")
    print(f"| one count of that train.jsonl (what each key cost when the preview counted it) "
          f"| {command} | {counted * 1000:.0f} ms | — | — |")
    print()
    print(f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. "
          "A key repaints the field, its note and the command line without a layout of the form "
          "(tui/widgets/form_widgets.py), in one frame: the field calls the form as the editor takes "
          "the key (tui/panes/hyperparameters/config_field.py), and the form's containers draw as "
          "one blank line; the rows come from the worker that counted them once.")


if __name__ == "__main__":
    main()
