"""Serving: `tunedeck serve RUN` vs `mlx_lm.server` started by hand with the same adapter.

Each side is a fresh process on a free loopback port. Two times per start: until `/health`
answers (tunedeck prints its URL only then; by hand, a user waits for the same), and the time to
the first token of the first streamed chat completion (the openai client, greedy); their sum is
what a user waits from the start to a first token. mlx_lm.server answers /health while it is
still loading the model, so the split between the two moves with the machine's load; the sum
does not. Starts alternate (by hand, tunedeck, by hand, …); medians. Budget: start to first
token, tunedeck / by hand <= 1.05.

    .venv/bin/python bench/bench_serve.py [--repeats 3]
"""

from __future__ import annotations

import argparse
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


def one_start(command: list[str], port: int) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not healthy(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited")
            time.sleep(0.02)
        ready = time.perf_counter() - start
        return ready, first_token_seconds(port)
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
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        model, adapters = train_tiny_adapter(Path(tmp_name))
        run = adapters.parent
        times: dict[str, list[tuple[float, float]]] = {"by hand": [], "tunedeck": []}
        for _ in range(args.repeats):
            port = free_port()
            times["by hand"].append(one_start(
                [sys.executable, "-m", "mlx_lm", "server", "--model", str(model), "--adapter-path",
                 str(adapters), "--port", str(port)], port))
            port = free_port()
            times["tunedeck"].append(one_start(
                [str(BIN / "tunedeck"), "serve", str(run), "--checkpoint", "final", "--port", str(port)], port))
    medians = {side: (statistics.median(r for r, _ in v), statistics.median(f for _, f in v))
               for side, v in times.items()}
    (hand_ready, hand_first), (ours_ready, ours_first) = medians["by hand"], medians["tunedeck"]
    print("| serving the tiny model + adapter | mlx_lm.server by hand | tunedeck serve | ratio |")
    print("|---|---|---|---|")
    print(f"| start until /health answers | {hand_ready:.2f} s | {ours_ready:.2f} s | {ours_ready / hand_ready:.2f} |")
    print(f"| time to first token of the first request | {hand_first * 1000:.0f} ms | "
          f"{ours_first * 1000:.0f} ms | {ours_first / hand_first:.2f} |")
    hand_total = statistics.median(r + f for r, f in times["by hand"])
    ours_total = statistics.median(r + f for r, f in times["tunedeck"])
    print(f"| start to first token (≤ 1.05) | {hand_total:.2f} s | {ours_total:.2f} s | "
          f"{ours_total / hand_total:.2f} |")


if __name__ == "__main__":
    main()
