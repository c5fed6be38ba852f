"""Training under tunedeck vs plain `mlx_lm.lora -c`, the same YAML, validation and checkpoints on.

Each side is a whole process as a user starts it: `tunedeck train cfg.toml --run-dir D` (which
starts its training process and follows it) and `mlx_lm.lora -c cfg.yaml` (the same config as
mlx-lm YAML, written by tunedeck's own config code). Both get the same environment, with the
machine's fast BLAS when it has one, so the figures compare tunedeck with mlx-lm and not two
BLAS libraries. Runs alternate in pairs (plain, tunedeck, plain, …) so noise from other work on
the machine falls on both alike. Two figures per side, medians over the pairs:

* whole-process wall time, from the start of the command to its exit;
* wall time per iteration between the first and the last train report, from the moments the
  report lines reach this script through the command's standard output.

The per-iteration ratio (plain / tunedeck, so higher is better for tunedeck), the median of the
pairs' own ratios with their spread, must be ≥ 0.98.
The fixed start-up overhead is what the whole-process difference leaves once the per-iteration
difference over all iterations is taken out; it must be ≤ 0.3 s.

    .venv/bin/python bench/bench_training.py [--pairs 5] [--iters 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import TINY_LEARNING_RATE, TINY_LORA  # noqa: E402
from tests.tinymodel import build_tiny_model, write_persona_dataset  # noqa: E402
from tunedeck.core.events import Train  # noqa: E402
from tunedeck.core.logparse import LogParser  # noqa: E402

BIN = Path(sys.executable).parent



def bench_env() -> dict:
    """The environment both sides of a training benchmark run in: the fast BLAS, plain output."""
    from tunedeck.core.blas import fast_blas_env

    env = fast_blas_env({k: v for k, v in os.environ.items() if k != "FORCE_COLOR"})
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    return env


def tiny_config(tmp: Path, iters: int, every: int):
    """The tiny model and dataset under ``tmp``, and the training config the benchmarks share
    (validation and a checkpoint every ``every`` iterations)."""
    from tunedeck.core.config import LoraParameters, TrainConfig

    model = build_tiny_model(tmp / "model")
    data = write_persona_dataset(tmp / "data", n_train=200)
    return TrainConfig(model=str(model), data=str(data), num_layers=2, batch_size=8, iters=iters,
                       learning_rate=TINY_LEARNING_RATE, steps_per_report=10, steps_per_eval=every,
                       save_every=every, val_batches=2, lora_parameters=LoraParameters(**TINY_LORA))

def timed_run(command: list[str], env: dict, cwd: Path) -> dict:
    """Run ``command``; its wall time and the arrival time of each train report it prints."""
    parser = LogParser()
    reports = []  # (iteration, seconds since start)
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=cwd, stdin=subprocess.DEVNULL)
    for chunk in iter(lambda: proc.stdout.readline(), b""):
        now = time.perf_counter() - started
        for event in parser.feed(chunk):
            if isinstance(event, Train):
                reports.append((event.iter, now))
    code = proc.wait()
    wall = time.perf_counter() - started
    if code != 0 or len(reports) < 2:
        raise SystemExit(f"{' '.join(command)} exited with {code} after {len(reports)} reports")
    (first_iter, first_t), (last_iter, last_t) = reports[0], reports[-1]
    return {"wall": wall, "per_iter": (last_t - first_t) / (last_iter - first_iter),
            "to_first": first_t, "after_last": wall - last_t}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--every", type=int, default=50, help="validation and checkpoint interval")
    args = ap.parse_args()
    from tunedeck.core.blas import blas_report

    env = bench_env()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = tiny_config(tmp, args.iters, every=args.every)
        toml = tmp / "cfg.toml"
        toml.write_text(config.to_toml())
        yaml = tmp / "cfg.yaml"
        yaml.write_text(config.to_mlx_yaml())
        plain, ours = [], []
        loads = [os.getloadavg()[0]]
        for i in range(args.pairs):
            plain.append(timed_run([str(BIN / "mlx_lm.lora"), "-c", str(yaml), "--train",
                                    "--adapter-path", str(tmp / f"plain{i}")], env, tmp))
            ours.append(timed_run([str(BIN / "tunedeck"), "train", str(toml), "--run-dir",
                                   str(tmp / f"ours{i}")], env, tmp))
            loads.append(os.getloadavg()[0])
    wall_p, wall_o = (statistics.median(r["wall"] for r in side) for side in (plain, ours))
    spi_p, spi_o = (statistics.median(r["per_iter"] for r in side) for side in (plain, ours))
    # Per pair, then the median: the two runs of a pair are minutes apart at most, so a change in
    # the machine's load falls on both; the spread shows how far one pair can be off.
    ratios = sorted(p["per_iter"] / o["per_iter"] for p, o in zip(plain, ours))
    ratio = statistics.median(ratios)
    overhead = statistics.median((o["wall"] - p["wall"]) - args.iters * (o["per_iter"] - p["per_iter"])
                                 for p, o in zip(plain, ours))
    first_p, first_o = (statistics.median(r["to_first"] for r in side) for side in (plain, ours))
    tail_p, tail_o = (statistics.median(r["after_last"] for r in side) for side in (plain, ours))
    report = blas_report()
    blas = "reference BLAS" if report.is_reference else f"{Path(report.library).name} ({report.core})"
    what = (f"tiny model, {args.iters} iterations, validation and a checkpoint every {args.every}, "
            f"median of {args.pairs} alternating pairs, {blas} on both sides, load "
            f"{min(loads):.1f}–{max(loads):.1f}")
    command = f"`bench/bench_training.py --pairs {args.pairs} --iters {args.iters}`"
    print("| what | command | plain `mlx_lm.lora -c` | `tunedeck train` | figure | budget | met |")
    print("|---|---|---|---|---|---|---|")
    print(f"| wall time per iteration, first to last report ({what}) | {command} | "
          f"{spi_p * 1000:.2f} ms | {spi_o * 1000:.2f} ms | throughput ratio {ratio:.3f} (median of "
          f"the pairs' ratios; {ratios[0]:.3f}–{ratios[-1]:.3f}) | ≥ 0.98 | "
          f"{'yes' if ratio >= 0.98 else 'no'} |")
    print(f"| whole-process wall time (same runs) | same | {wall_p:.2f} s | {wall_o:.2f} s | "
          f"fixed start-up overhead {overhead:+.2f} s | ≤ 0.3 s | {'yes' if overhead <= 0.3 else 'no'} |")
    # Where the fixed part goes: before the first report (start-up, loading, first validation)
    # and after the last one (final save, exit, noticing the exit).
    print(f"| start to first train report / last report to exit (same runs) | same | "
          f"{first_p:.2f} s / {tail_p:.2f} s | {first_o:.2f} s / {tail_o:.2f} s | "
          f"{first_o - first_p:+.2f} s / {tail_o - tail_p:+.2f} s | — | — |")


if __name__ == "__main__":
    main()
