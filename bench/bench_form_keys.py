"""The form's budget: keystroke → screen in Hyperparameters, with epochs set and a 1 GB train.jsonl.

    .venv/bin/python bench/bench_form_keys.py [--gb 1.0] [--keys 40]

``tunedeck PROJECT`` runs in a pseudo-terminal of 160x48 on a project whose tunedeck.toml sets
``epochs`` and whose data/train.jsonl is ``--gb`` gigabytes. Once the form shows the iterations
the epochs amount to (the rows are counted once, in a worker), the batch_size field gets the
focus and keys go in one at a time: "2" (batch 42), then backspace (batch 4), and so on. Each
changes the iterations, so each must redraw the command line. A key's time runs from writing it
to the terminal until the terminal has received the command line with the new ``--iters``.

Also printed: how long one count of the file takes, which is what every key cost when the
command preview counted train.jsonl itself.

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

    def wait_for(self, pattern: bytes, timeout: float) -> float:
        """Read until ``pattern`` arrives in what the terminal receives from now on; returns
        the time it arrived (perf_counter)."""
        seen = b""
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"no {pattern!r} within {timeout} s:\n"
                                   + seen.decode(errors="replace")[-1500:])
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                seen = COLOURS.sub(b"", seen[-4096:] + os.read(self.master, 1 << 16))
                if pattern in seen:
                    return time.perf_counter()

    def press(self, key: bytes) -> float:
        sent = time.perf_counter()
        os.write(self.master, key)
        return sent

    def close(self) -> None:
        os.write(self.master, b"\x11")  # ctrl+q
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)


def key_latencies_ms(project: Path, home: Path, rows: int, keys: int) -> list[float]:
    term = Terminal(project, home)
    try:
        # The epochs note comes once the worker has counted the rows.
        term.wait_for(f"= {EPOCHS * rows // 4} iterations".encode(), timeout=300)
        for _ in range(40):  # tab through the fields to batch_size (its help shows when focused)
            term.press(b"\t")
            try:
                term.wait_for(b"batch_size: Examples per iteration", timeout=1.0)
                break
            except RuntimeError:
                continue
        else:
            raise RuntimeError("batch_size never got the focus")
        term.press(b"\x1b[F")  # End: the cursor after the "4"
        time.sleep(0.5)
        latencies = []
        for i in range(keys):
            key, batch = (b"2", 42) if i % 2 == 0 else (b"\x7f", 4)
            sent = term.press(key)
            shown = term.wait_for(f"--iters {EPOCHS * rows // batch}".encode(), timeout=60)
            latencies.append((shown - sent) * 1000)
            time.sleep(0.05)  # a fast typist's pace, so one key's frame is not merged into the next
        return latencies
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
        latencies = key_latencies_ms(project, root / "home", rows, args.keys)
    p50, worst = statistics.median(latencies), p95(latencies)
    print("| what | figure | budget | met |")
    print("|---|---|---|---|")
    print(f"| form keystroke → command line redrawn, epochs set, {args.gb:g} GB train.jsonl "
          f"({rows:,} rows), {len(latencies)} keys in a 160×48 pty | p50 {p50:.0f} ms, "
          f"p95 {worst:.0f} ms | p95 ≤ {KEY_BUDGET_MS:.0f} ms | "
          f"{'yes' if worst <= KEY_BUDGET_MS else 'no'} |")
    print(f"| one count of that train.jsonl (what each key cost when the preview counted it) "
          f"| {counted * 1000:.0f} ms | — | — |")


if __name__ == "__main__":
    main()
