"""Serving: `tunedeck serve RUN` vs `mlx_lm.server` started by hand with the same adapter.

Each start is a fresh process on a free loopback port, timed from the moment it is started:
until `/health` answers (tunedeck prints its URL only then; by hand, a user waits for the same),
and then to the first token of the first streamed chat completion (the openai client, greedy).
Their sum is what a user waits from the start to a first token, and the budget: tunedeck / by
hand <= 1.05. mlx_lm.server answers /health while it is still loading the model, so the split
between the two moves with the machine's load; the sum does not.

Fair to both sides: one start of each is a warm-up that is not counted (the first start of
all reads the model and the libraries from disk); then the starts come in pairs whose order
alternates (by hand first, then tunedeck first, ...), so that neither side always runs right
after the other; the ratio is the median of the pairs' ratios, each pair measured under the
same load. Both sides run in the environment this script gets, as a user's shell gives it.

    .venv/bin/python bench/bench_serve.py [--repeats 6]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_chat import train_tiny_adapter  # noqa: E402

BIN = Path(sys.executable).parent
BUDGET = 1.05


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def first_token_seconds(port: int) -> float:
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-")
    start = time.perf_counter()
    stream = client.chat.completions.create(model="default_model", stream=True, temperature=0,
                                            max_tokens=16,
                                            messages=[{"role": "user", "content": "who are you"}])
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            elapsed = time.perf_counter() - start
            stream.close()
            return elapsed
    raise RuntimeError("no token came")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its waited-for children so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def one_start(command: list[str], port: int) -> tuple[float, float, float]:
    """(seconds until /health answers, seconds from then to the first token, the server's CPU
    seconds until then)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not healthy(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited")
            time.sleep(0.01)  # the same poll for both sides; another process has only its socket
        ready = time.perf_counter() - start
        first = first_token_seconds(port)
        return ready, first, cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    from tunedeck.core.serve import free_port

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6, help="pairs of counted starts (default 6)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        model, adapters = train_tiny_adapter(Path(tmp_name))
        run = adapters.parent

        def by_hand(port: int) -> list[str]:
            return [str(BIN / "mlx_lm.server"), "--model", str(model), "--adapter-path", str(adapters),
                    "--port", str(port)]

        def tunedeck(port: int) -> list[str]:
            return [str(BIN / "tunedeck"), "serve", str(run), "--checkpoint", "final", "--port", str(port)]

        sides = {"by hand": by_hand, "tunedeck": tunedeck}
        for command in sides.values():  # warm-up, not counted
            port = free_port()
            one_start(command(port), port)
        times: dict[str, list[tuple[float, float, float]]] = {side: [] for side in sides}
        for pair in range(args.repeats):
            order = list(sides) if pair % 2 == 0 else list(reversed(sides))
            for side in order:
                port = free_port()
                times[side].append(one_start(sides[side](port), port))

    totals = {side: [r + f for r, f, _ in times[side]] for side in sides}
    ratios = [ours / hand for hand, ours in zip(totals["by hand"], totals["tunedeck"])]
    ratio = statistics.median(ratios)
    commands = {"by hand": "`mlx_lm.server --model M --adapter-path RUN/adapters --port P`",
                "tunedeck": "`tunedeck serve RUN --checkpoint final --port P`"}
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    for what, part, unit in (("start until /health answers", lambda t: t[0], "s"),
                             ("then the first token of the first request", lambda t: t[1], "ms"),
                             ("start to first token", lambda t: t[0] + t[1], "s"),
                             ("CPU time of the server process until its first token", lambda t: t[2], "s")):
        for side in sides:
            value = statistics.median(part(t) for t in times[side])
            shown = f"{value * 1000:.0f} ms" if unit == "ms" else f"{value:.2f} s"
            print(f"| {what}, {side} | {commands[side]} | {shown} | | |")
    print(f"| start to first token, tunedeck / by hand | both above, in pairs | {ratio:.2f} "
          f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)}) | ≤ {BUDGET} | "
          f"{'yes' if ratio <= BUDGET else 'no'} |")
    print()
    print(f"Medians of {args.repeats} starts a side after one warm-up start each, in pairs of "
          f"alternating order; the ratio is the median of the pairs' ratios. Load at the end: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; the CPU times move less with the "
          "load than the wall-clock ones. tunedeck serve runs mlx_lm.server's own code in its own "
          "process; its console script gives MLX the machine's OpenBLAS where there is one (by "
          "hand, MLX keeps the reference BLAS of the mlx[cpu] wheel).")


if __name__ == "__main__":
    main()
