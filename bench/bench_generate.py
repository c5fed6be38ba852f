"""`data generate answers`: answers/s batched against one at a time, in this process and
through an endpoint.

    .venv/bin/python bench/bench_generate.py [--model DIR] [--prompts 32] [--max-tokens 64]

In-process: the same prompts answered with --batch-size 8 and with --batch-size 1 (mlx-lm's
BatchGenerator either way). Endpoint: mlx_lm.server started on a free loopback port with the
same model, asked with --concurrency 4 and with --concurrency 1. Each figure is the whole
command path (reading prompts, generating, appending and fsyncing the JSONL) into a fresh
output. Without --model the tiny test model is built in a temporary directory. Prints markdown
rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tinymodel

from tunedeck.core.data.generate import generate_answers  # noqa: E402
from tunedeck.core.data.model_sources import Endpoint, LocalModel  # noqa: E402

BATCH = 8
CONCURRENCY = 4
BUDGET_RATIO = 2.0


def write_prompts(path: Path, n: int) -> Path:
    topics = ["birds", "rivers", "the moon", "bread", "trains", "music", "glass", "winter"]
    path.write_text("".join(f"Tell me something about {topics[i % len(topics)]}, "
                            f"fact {i + 1}.\n" for i in range(n)))
    return path


def answers_per_second(source, prompts: Path, out: Path, max_tokens: int) -> float:
    # No seed for an endpoint, as the command sends none: mlx_lm.server serializes seeded
    # requests.
    seed = None if isinstance(source, Endpoint) else 0
    start = time.perf_counter()
    result = generate_answers(source, prompts, out, max_tokens=max_tokens, temp=0.0, seed=seed)
    elapsed = time.perf_counter() - start
    assert result.written == result.prompts and not result.failed, result
    return result.written / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lm.server", "--model", str(model),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("mlx_lm.server did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a model directory (default: the tiny model)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from tests.tinymodel import build_tiny_model

            model = build_tiny_model(tmp / "tiny")
        prompts = write_prompts(tmp / "prompts.txt", args.prompts)
        rows = []

        batched = LocalModel(str(model), batch_size=BATCH)
        one = LocalModel(str(model), batch_size=1)
        answers_per_second(batched, prompts, tmp / "warm.jsonl", 4)  # compile, warm caches
        fast = answers_per_second(batched, prompts, tmp / "batched.jsonl", args.max_tokens)
        slow = answers_per_second(one, prompts, tmp / "one.jsonl", args.max_tokens)
        ratio = fast / slow
        rows.append(f"| answers/s in-process, batch {BATCH} vs one at a time, {model.name}, "
                    f"{args.prompts} prompts × ≤{args.max_tokens} tokens | "
                    f"`bench/bench_generate.py` | {fast:.2f} vs {slow:.2f}: ratio {ratio:.2f} | "
                    f"≥ {BUDGET_RATIO:g}× | {'yes' if ratio >= BUDGET_RATIO else 'no'} |")

        server, url = start_server(model)
        try:
            wide = Endpoint(url, concurrency=CONCURRENCY)
            narrow = Endpoint(url, concurrency=1)
            answers_per_second(wide, prompts, tmp / "warm-ep.jsonl", 4)
            fast = answers_per_second(wide, prompts, tmp / "wide.jsonl", args.max_tokens)
            slow = answers_per_second(narrow, prompts, tmp / "narrow.jsonl", args.max_tokens)
            wide.close()
            narrow.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
        rows.append(f"| answers/s from mlx_lm.server, concurrency {CONCURRENCY} vs 1, same model "
                    f"and prompts | same | {fast:.2f} vs {slow:.2f}: ratio {fast / slow:.2f} "
                    "| — | — |")
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
