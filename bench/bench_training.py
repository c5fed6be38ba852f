"""Training under tunedeck vs plain `mlx_lm.lora -c`, the same YAML, validation and checkpoints on.

Each side is a whole process as a user starts it: `tunedeck train cfg.toml --run-dir D` (which
starts its training process and follows it) and `mlx_lm.lora -c cfg.yaml` (the same config as
mlx-lm YAML, written by tunedeck's own config code). Both get the same environment, with the
machine's fast BLAS when it has one, so the figures compare tunedeck with mlx-lm and not two
BLAS libraries.

Both sides are timed the same way. The process that trains writes mlx-lm's output straight into
a file: mlx_lm.lora's standard output is a file here, tunedeck's trainer writes its run's
train.log. This script reads both files with the same loop (every POLL_S) and stamps each train
report with the moment its line reached the file; what `tunedeck train` copies to its own output
is not used for timing (it follows the log on a timer of its own). The end of a process is seen
by the same loop.

One short unmeasured pair comes first, so both sides start as on a machine that has trained
before (files in the page cache, tunedeck's bytecode written, the BLAS check cached). Runs then
alternate in pairs, and the order within a pair alternates too (plain then tunedeck, then
tunedeck then plain, …), so the load of other work on the machine and whatever warms up over a
run fall on both sides alike. Per pair:

* wall time per iteration between the first and the last train report, and the ratio
  plain / tunedeck (higher is better for tunedeck); budget: the median of the pairs' ratios ≥ 0.98;
* the fixed start-up overhead: the whole-process difference (start of the command to its exit)
  once the per-iteration difference over all iterations is taken out; budget: median ≤ 0.3 s.

Medians over the pairs, with the spread (lowest–highest) and the load average around each pair.

    .venv/bin/python bench/bench_training.py [--pairs 10] [--iters 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
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
# How often both sides' logs are read: the resolution of every time below. A read of a file
# with nothing new costs a few microseconds, so this loop takes no measurable CPU from the run.
POLL_S = 0.005
RATIO_BUDGET = 0.98
OVERHEAD_BUDGET_S = 0.3


def bench_env() -> dict:
    """The environment both sides of a training benchmark run in: the fast BLAS, plain output."""
    from tunedeck.core.blas import fast_blas_env

    # PYTHONDONTWRITEBYTECODE (set on some development machines) would make every tunedeck
    # process compile its edited modules again, which an installed tunedeck never does; mlx-lm's
    # bytecode was written when it was installed.
    env = fast_blas_env({k: v for k, v in os.environ.items()
                         if k not in ("FORCE_COLOR", "PYTHONDONTWRITEBYTECODE")})
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


def timed_run(command: list[str], log: Path, output: Path, env: dict, cwd: Path) -> dict:
    """Run ``command`` with its output in ``output``; the arrival time of each train report in
    ``log`` (the file the training process itself writes, which may be ``output``)."""
    parser = LogParser()
    reports: list[tuple[int, float]] = []  # (iteration, seconds since start)
    fd = None

    def read_new(now: float) -> None:
        nonlocal fd
        if fd is None:
            try:
                fd = os.open(log, os.O_RDONLY)
            except FileNotFoundError:
                return  # `tunedeck train` has not created its run directory yet
        while chunk := os.read(fd, 1 << 16):
            reports.extend((e.iter, now) for e in parser.feed(chunk) if isinstance(e, Train))

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(output, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                stdin=subprocess.DEVNULL)
        while True:
            try:
                code = proc.wait(timeout=POLL_S)  # the loop's pause, and it sees the exit at once
            except subprocess.TimeoutExpired:
                read_new(time.perf_counter() - started)
                continue
            wall = time.perf_counter() - started
            read_new(wall)
            break
    if fd is not None:
        os.close(fd)
    # The CPU time of the command and every process under it (each is waited for by its parent).
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (now.ru_utime + now.ru_stime) - (children.ru_utime + children.ru_stime)
    if code != 0 or len(reports) < 2:
        tail = output.read_text(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"{' '.join(command)} exited with {code} after {len(reports)} reports: "
                         + " / ".join(tail))
    (first_iter, first_t), (last_iter, last_t) = reports[0], reports[-1]
    return {"wall": wall, "per_iter": (last_t - first_t) / (last_iter - first_iter),
            "to_first": first_t, "after_last": wall - last_t, "cpu": cpu}


def spread(values) -> str:
    values = sorted(values)
    return f"{values[0]:.3f}–{values[-1]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--every", type=int, default=50, help="validation and checkpoint interval")
    args = ap.parse_args()
    from tunedeck.core.blas import blas_report

    env = bench_env()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = tiny_config(tmp, args.iters, every=args.every)
        toml = tmp / "cfg.toml"
        toml.write_text(config.to_toml())
        yaml = tmp / "cfg.yaml"
        yaml.write_text(config.to_mlx_yaml())

        def plain(i, yaml: Path = yaml) -> dict:
            log = tmp / f"plain{i}.log"
            return timed_run([str(BIN / "mlx_lm.lora"), "-c", str(yaml), "--train",
                              "--adapter-path", str(tmp / f"plain{i}")], log, log, env, tmp)

        def ours(i, toml: Path = toml) -> dict:
            run_dir = tmp / f"ours{i}"
            return timed_run([str(BIN / "tunedeck"), "train", str(toml), "--run-dir", str(run_dir)],
                             run_dir / "train.log", tmp / f"ours{i}.out", env, tmp)

        # One short unmeasured pair first: the files in the page cache, bytecode written, the
        # BLAS check cached, for both sides, as on a machine that has trained before.
        warm = dataclasses.replace(config, iters=20, steps_per_eval=10, save_every=10)
        (tmp / "warm.toml").write_text(warm.to_toml())
        (tmp / "warm.yaml").write_text(warm.to_mlx_yaml())
        plain("-warm-up", tmp / "warm.yaml")
        ours("-warm-up", tmp / "warm.toml")
        pairs: list[tuple[dict, dict, float, float]] = []  # plain, tunedeck, load before, after
        for i in range(args.pairs):
            before = os.getloadavg()[0]
            if i % 2 == 0:
                p, o = plain(i), ours(i)
            else:
                o, p = ours(i), plain(i)
            pairs.append((p, o, before, os.getloadavg()[0]))

    keys = ("per_iter", "wall", "to_first", "after_last", "cpu")
    mp = {k: statistics.median(p[k] for p, _, _, _ in pairs) for k in keys}  # plain's medians
    mo = {k: statistics.median(o[k] for _, o, _, _ in pairs) for k in keys}  # tunedeck's

    # Per pair, then the median: the two runs of a pair are under a minute apart, so a change in
    # the machine's load falls on both; the spread shows how far one pair can be off.
    ratios = [p["per_iter"] / o["per_iter"] for p, o, _, _ in pairs]
    ratio = statistics.median(ratios)
    overheads = [(o["wall"] - p["wall"]) - args.iters * (o["per_iter"] - p["per_iter"])
                 for p, o, _, _ in pairs]
    overhead = statistics.median(overheads)
    loads = [load for *_, before, after in pairs for load in (before, after)]
    report = blas_report()
    blas = "reference BLAS" if report.is_reference else f"{Path(report.library).name} ({report.core})"
    what = (f"tiny model, {args.iters} iterations, validation and a checkpoint every {args.every}, "
            f"{args.pairs} alternating pairs, {blas} on both sides")
    command = f"`bench/bench_training.py --pairs {args.pairs} --iters {args.iters}`"
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    print(f"| wall time per iteration, first to last train report ({what}) | {command} | "
          f"plain {mp['per_iter'] * 1000:.2f} ms, tunedeck {mo['per_iter'] * 1000:.2f} ms: "
          f"throughput ratio {ratio:.3f} (median of the pairs' ratios; {spread(ratios)}) | "
          f"≥ {RATIO_BUDGET} | {'yes' if ratio >= RATIO_BUDGET else 'no'} |")
    print(f"| fixed start-up overhead: whole-process difference less the per-iteration difference "
          f"(same runs) | same | {overhead:+.2f} s (median; {min(overheads):+.2f} to "
          f"{max(overheads):+.2f}); whole process plain {mp['wall']:.2f} s, tunedeck "
          f"{mo['wall']:.2f} s | ≤ {OVERHEAD_BUDGET_S} s | "
          f"{'yes' if overhead <= OVERHEAD_BUDGET_S else 'no'} |")
    # Where the fixed part goes: before the first report (start-up, loading, first validation)
    # and after the last one (final save, exit).
    to_first = [o["to_first"] - p["to_first"] for p, o, _, _ in pairs]
    after_last = [o["after_last"] - p["after_last"] for p, o, _, _ in pairs]
    print(f"| start to first train report / last report to exit (same runs) | same | plain "
          f"{mp['to_first']:.2f} s / {mp['after_last']:.2f} s, tunedeck "
          f"{mo['to_first']:.2f} s / {mo['after_last']:.2f} s: "
          f"{statistics.median(to_first):+.2f} s / {statistics.median(after_last):+.2f} s "
          f"(medians of the pairs' differences) | — | — |")
    extra_cpu = [o["cpu"] - p["cpu"] for p, o, _, _ in pairs]
    print(f"| CPU time of the whole process tree, user + system (same runs) | same | plain "
          f"{mp['cpu']:.2f} s, tunedeck {mo['cpu']:.2f} s: {statistics.median(extra_cpu):+.2f} s "
          f"(median of the pairs' differences; {min(extra_cpu):+.2f} to {max(extra_cpu):+.2f}) | — | — |")
    print()
    print(f"Both sides' report times come from the file the training process writes (mlx_lm.lora's "
          f"standard output redirected to a file, tunedeck's train.log), read by the same loop "
          f"every {POLL_S * 1000:.0f} ms; the order within a pair alternates. Load average "
          f"(1 min) around the pairs: {min(loads):.1f}–{max(loads):.1f}, "
          f"{pairs[0][2]:.1f} before the first and {pairs[-1][3]:.1f} after the last. On a machine "
          f"busier than its {os.cpu_count()} cores the wall times are mostly the scheduler's, and the "
          f"CPU times move with it too (OpenBLAS's workers spin while they wait for work).")
    print()
    print("| pair | first | plain per iteration | tunedeck per iteration | ratio | overhead | "
          "load before / after |")
    print("|---|---|---|---|---|---|---|")
    for i, ((p, o, before, after), r, extra) in enumerate(zip(pairs, ratios, overheads)):
        print(f"| {i + 1} | {'plain' if i % 2 == 0 else 'tunedeck'} | {p['per_iter'] * 1000:.2f} ms | "
              f"{o['per_iter'] * 1000:.2f} ms | {r:.3f} | {extra:+.2f} s | {before:.1f} / {after:.1f} |")


if __name__ == "__main__":
    main()
