"""Run every benchmark in bench/ and write their tables to bench/BENCHMARKS.md.

    make bench        (or: .venv/bin/python bench/run_all.py [NAME ...])

Figures depend on the machine and on what else runs on it: the file records both.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_logparse", "bench_data", "bench_training", "bench_tui", "bench_chat"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
        mem_text = f", {mem} GB RAM"
    except (OSError, ValueError, IndexError):
        mem_text = ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{mem_text}, "
            f"Python {platform.python_version()}; load average at start {load:.2f}")


def main() -> None:
    names = sys.argv[1:] or [b for b in BENCHES if (HERE / f"{b}.py").exists()]
    sections = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(HERE / f"{name}.py")], capture_output=True, text=True)
        took = time.monotonic() - started
        body = proc.stdout.strip() if proc.returncode == 0 else f"failed:\n\n```\n{proc.stderr[-2000:]}\n```"
        sections.append(f"## {name} ({took:.0f} s)\n\nCommand: `.venv/bin/python bench/{name}.py`\n\n{body}\n")
    text = (f"# Benchmarks\n\nMachine: {machine()}.\nWritten by `bench/run_all.py` on "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}.\n\n" + "\n".join(sections))
    (HERE / "BENCHMARKS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
