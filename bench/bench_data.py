"""Data pane budgets on a big JSONL: first rows, jump to any row, validation throughput.

    .venv/bin/python bench/bench_data.py [--size-mb 1024] [--workers N]

Writes a chat JSONL of the given size (realistic records: a system turn on some, non-ASCII
text on some, a tools list on a few) into a temporary directory, measures, prints a markdown
table and deletes the file. The file has just been written, so it is in the page cache: the
figures are for a warm cache, as when the Data pane reopens a file it showed before.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tunedeck.core.data.line_index import LineIndex
from tunedeck.core.data.validate import validate_file

FIRST_ROWS_BUDGET_S = 0.5
RANDOM_ROW_BUDGET_MS = 50.0
VALIDATION_BUDGET_MBPS = 100.0

WORDS = ("the model learns from every row of the data set and the loss goes down slowly while "
         "the deck shows each step with its time left café naïve über 東京 données").split()


def _record(rng: random.Random) -> dict:
    def sentence(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": sentence(5, 20)})
    for _ in range(rng.choice((1, 1, 2, 3))):
        messages.append({"role": "user", "content": sentence(8, 80)})
        messages.append({"role": "assistant", "content": sentence(20, 250)})
    rec = {"messages": messages}
    if rng.random() < 0.05:
        rec["tools"] = [{"type": "function", "function": {
            "name": "lookup", "description": sentence(3, 10),
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    return rec


def write_jsonl(path: Path, size: int, seed: int = 0) -> int:
    """Write about ``size`` bytes; returns the number of lines. A pool of distinct lines is
    drawn from at random (json.dumps of a million records would dominate the run)."""
    rng = random.Random(seed)
    pool = [(json.dumps(_record(rng), ensure_ascii=rng.random() < 0.5) + "\n").encode()
            for _ in range(4000)]
    written = lines = 0
    with open(path, "wb") as f:
        while written < size:
            batch = [rng.choice(pool) for _ in range(1000)]
            data = b"".join(batch)
            f.write(data)
            written += len(data)
            lines += len(batch)
    return lines


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the validation workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench(size_mb: int, workers: int) -> list:
    results = []
    with tempfile.TemporaryDirectory(prefix="tunedeck-bench-") as tmp:
        path = Path(tmp) / "big.jsonl"
        t0 = time.perf_counter()
        lines = write_jsonl(path, size_mb << 20)
        size = path.stat().st_size
        print(f"wrote {size / 1e9:.2f} GB, {lines:,} lines in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)

        # First rows: open, index in the background, read and parse the first screenful.
        t0 = time.perf_counter()
        index = LineIndex(path).start()
        index.wait_for(49)
        rows = [json.loads(line) for line in index.read_lines(0, 50)]
        first = time.perf_counter() - t0
        assert len(rows) == 50
        results.append(("first 50 rows shown (index building)", f"≤ {FIRST_ROWS_BUDGET_S} s",
                        f"{first * 1000:.1f} ms", first <= FIRST_ROWS_BUDGET_S))

        index.wait()
        built = time.perf_counter() - t0
        assert len(index) == lines
        results.append(("full line index", "—", f"{built:.2f} s ({size / 1e6 / built:,.0f} MB/s)",
                        None))

        rng = random.Random(1)
        times = []
        for _ in range(2000):
            n = rng.randrange(lines)
            t1 = time.perf_counter()
            json.loads(index.read_line(n))
            times.append((time.perf_counter() - t1) * 1000)
        worst = max(times)
        results.append(("jump to a random row (read + parse), 2000 jumps",
                        f"≤ {RANDOM_ROW_BUDGET_MS:g} ms",
                        f"median {statistics.median(times):.3f} ms, max {worst:.2f} ms",
                        worst <= RANDOM_ROW_BUDGET_MS))
        index.close()

        for n in sorted({1, workers}):
            t0, cpu0 = time.perf_counter(), _cpu_seconds()
            report = validate_file(path, workers=n)
            took, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
            assert report.rows == lines and report.errors == 0, report.problems[:3]
            rate = size / 1e6 / took
            # Per CPU-second as well: on a shared machine the wall-clock rate says more about
            # the other processes than about this code.
            label = f"full validation, {n} process{'es' if n > 1 else ''}"
            results.append((label, f"≥ {VALIDATION_BUDGET_MBPS:g} MB/s",
                            f"{rate:,.0f} MB/s ({took:.1f} s); {size / 1e6 / cpu:,.0f} MB "
                            "per CPU-second",
                            rate >= VALIDATION_BUDGET_MBPS if n == workers else None))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="validation processes (default: one per core)")
    args = parser.parse_args()
    results = bench(args.size_mb, args.workers)
    print(f"\nData pane on a {args.size_mb} MB JSONL ({os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f})\n")
    print("| measure | budget | measured | within budget |")
    print("|---|---|---|---|")
    for what, budget, measured, ok in results:
        verdict = "—" if ok is None else ("yes" if ok else "**no**")
        print(f"| {what} | {budget} | {measured} | {verdict} |")
    return 0 if all(ok is not False for *_, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
