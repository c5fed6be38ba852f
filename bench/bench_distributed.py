"""Two local ranks against one process, the same global batch: tokens/s, and the communication.

Both sides are `tunedeck train cfg.toml --run-dir D` as a user starts it, the one-process config
and the same with `ranks = 2` (each rank takes half of every batch; mlx-lm averages the
gradients over the ring backend on 127.0.0.1). Runs alternate (one process, two ranks, …) so
noise from other work on the machine falls on both alike. Figures, medians over the pairs:

* tokens/s: mlx-lm's own report (with ranks, the tokens of all of them over the step time),
  the reports after the first (which holds compilation);
* wall time per iteration between the first and the last train report (from metrics.jsonl);
* the communication per step, measured apart on two ranks started as tunedeck starts them:
  mlx's ``average_gradients`` on a gradient the shape of this adapter's trainable weights (what
  the trainer does once per step), and tunedeck's stop agreement (one ``all_max`` of an
  integer, once per step). Inside the trainer both are part of the compiled step, which cannot
  be timed apart.

On a machine with 2 cores two ranks share the cores one process had: expect about 1×.

    .venv/bin/python bench/bench_distributed.py [--pairs 2] [--iters 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import TINY_LORA  # noqa: E402

BIN = Path(sys.executable).parent
REPEATS = 300


def run_training(toml: Path, run_dir: Path, env: dict) -> dict:
    done = subprocess.run([str(BIN / "tunedeck"), "train", str(toml), "--run-dir", str(run_dir)],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"tunedeck train {toml} exited with {done.returncode}: "
                         f"{done.stderr.decode(errors='replace')[-500:]}")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    train = [e for e in map(json.loads, lines) if e["kind"] == "train"]
    later = train[1:]
    return {"tok_s": statistics.median(e["tokens_per_sec"] for e in later),
            "per_iter": statistics.median(1 / e["it_per_sec"] for e in later)}


def communication(model: Path, env: dict) -> dict:
    """Milliseconds per step of the two collectives, on two ranks of this machine."""
    from tunedeck.core.distributed import Layout, RankPlace, rank_environment

    layout = Layout("ring", [RankPlace(0, "127.0.0.1", "127.0.0.1"),
                             RankPlace(1, "127.0.0.1", "127.0.0.1")])
    files: dict = {}
    extra = dict(rank_environment(layout, files))
    with tempfile.TemporaryDirectory() as tmp:
        hostfile = Path(tmp) / "hosts.json"
        hostfile.write_text(files["MLX_HOSTFILE"])
        procs = [subprocess.Popen([sys.executable, __file__, "--comm-rank", str(model)],
                                  env=dict(env, **extra, MLX_RANK=str(rank), MLX_HOSTFILE=str(hostfile)),
                                  stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
                 for rank in range(2)]
        outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("the communication measurement failed")
    return json.loads(outputs[0])


def comm_rank(model: Path) -> None:
    """One rank of the measurement: the adapter's gradient shapes, averaged REPEATS times."""
    import mlx.core as mx
    from mlx.nn.utils import average_gradients
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load

    group = mx.distributed.init(strict=True, backend="ring")
    loaded, _ = load(str(model))
    loaded.freeze()
    linear_to_lora_layers(loaded, 2, dict(TINY_LORA))
    grads = tree_map(lambda p: mx.ones_like(p), loaded.trainable_parameters())
    mx.eval(grads)

    def timed(step) -> float:
        for _ in range(10):
            step()
        start = time.perf_counter()
        for _ in range(REPEATS):
            step()
        return (time.perf_counter() - start) / REPEATS * 1000

    average_ms = timed(lambda: mx.eval(average_gradients(grads)))
    agree_ms = timed(lambda: mx.distributed.all_max(mx.array(0), stream=mx.cpu).item())
    size = sum(v.nbytes for _, v in tree_flatten(grads))
    if group.rank() == 0:
        print(json.dumps({"average_ms": average_ms, "agree_ms": agree_ms, "gradient_bytes": size}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--comm-rank", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.comm_rank:
        comm_rank(args.comm_rank)
        return
    from bench_training import bench_env, tiny_config

    env = bench_env()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = tiny_config(tmp, args.iters, every=args.iters)
        one, two = tmp / "one.toml", tmp / "two.toml"
        one.write_text(config.to_toml())
        two.write_text(dataclasses.replace(config, ranks=2).to_toml())
        singles, pairs = [], []
        loads = [os.getloadavg()[0]]
        for i in range(args.pairs):
            singles.append(run_training(one, tmp / f"one{i}", env))
            pairs.append(run_training(two, tmp / f"two{i}", env))
            loads.append(os.getloadavg()[0])
        comm = communication(config.model, env)
        loads.append(os.getloadavg()[0])
    tok_1, tok_2 = (statistics.median(r["tok_s"] for r in side) for side in (singles, pairs))
    spi_1, spi_2 = (statistics.median(r["per_iter"] for r in side) for side in (singles, pairs))
    comm_ms = comm["average_ms"] + comm["agree_ms"]
    cores = os.cpu_count()
    what = (f"tiny model, batch 8, {args.iters} iterations, median of {args.pairs} alternating "
            f"pairs, {cores} cores, load {min(loads):.1f}–{max(loads):.1f}")
    command = f"`bench/bench_distributed.py --pairs {args.pairs} --iters {args.iters}`"
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    print(f"| tokens/s, 2 ranks on 127.0.0.1 (ring) vs 1 process, same global batch ({what}) | "
          f"{command} | {tok_2:,.0f} vs {tok_1:,.0f} tok/s: {tok_2 / tok_1:.2f}× | "
          f"≈ 1× on 2 cores (no budget) | — |")
    print(f"| time per iteration (same runs) | same | {spi_2 * 1000:.1f} ms vs {spi_1 * 1000:.1f} ms | "
          f"— | — |")
    print(f"| communication per step on 2 ranks: gradient average ({comm['gradient_bytes'] / 1e3:.0f} kB) "
          f"+ stop agreement | same | {comm['average_ms']:.2f} ms + {comm['agree_ms']:.2f} ms = "
          f"{comm_ms:.2f} ms, {100 * comm_ms / 1000 / spi_2:.0f}% of a 2-rank step | — | — |")
    print()
    print(f"Notes: on {cores} cores two ranks share the cores one process had, so the ratio shows "
          "the cost of splitting the batch and of the ring, not a speed-up; on several Macs each "
          "rank has a machine of its own. The communication is timed apart from training (in the "
          "trainer it is inside the compiled step) on gradients of this adapter's shape.")


if __name__ == "__main__":
    main()
