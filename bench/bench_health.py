"""What run health costs training: the monitor on every event, and answer checks at checkpoints.

1. The monitor. mlx-lm's own ``train()`` trains the tiny model in this process with a training
   callback that does what the runner's does (an event per report, appended to a metrics.jsonl),
   with and without each event also fed to a ``HealthMonitor``. The monitor is plain Python on
   the training thread, called once per report with floats mlx-lm has already taken out of MLX:
   it forces no evaluation, so what it adds to training is exactly the time inside ``observe``.
   That time is measured directly in the monitored runs (its wall time and the thread's CPU time)
   against the wall time of their ``train()``: the budget, training with / without the monitor
   = 1 − the monitor's share, >= 0.99. The end-to-end comparison is kept as a cross-check: pairs
   of runs, the order swapped at every pair so a drift of the machine's load hits both alike,
   the pace of each run taken between its first and last reports (trained tokens over that wall
   time, callbacks included; the start-up and the first compilation left out), and the median of
   the pairs' ratios with their spread. On a shared machine that spread is several percent,
   wider than the 1% being checked, which is why it is not the budget's measure (the budget
   was once that ratio, over the wall time of the whole ``train()``, median of 5 per variant:
   two runs of the same code gave 0.951 and 1.020).
   The monitor's cost per event is also timed on a long synthetic stream, first and last 10k
   events apart: a long run must not make each report dearer.
2. Answer checks as they run: real runs through ``start_run`` (the runner, its supervisor and,
   with ``answer_checks`` on, one ``python -m tunedeck.core.probes`` process per checkpoint at a
   lower priority), on and off alternating. Reported: the seconds each check took (from its
   ``NNNNNNN_answers.json``), training's tokens/s while checks run beside it (median of the
   reports) against the runs without, how long a finished run waited for its last check, and
   the checks skipped because a newer checkpoint came while one ran.

    .venv/bin/python bench/bench_health.py [--repeats 7] [--iters 200] [--run-repeats 3] [--run-iters 200]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import TINY_LEARNING_RATE, TINY_LORA  # noqa: E402
from tests.tinymodel import build_tiny_model, write_persona_dataset  # noqa: E402
from tunedeck.core import events as ev  # noqa: E402
from tunedeck.core.health import HealthMonitor, model_vocab_size  # noqa: E402

REPORT_EVERY, SAVE_EVERY, EVAL_EVERY = 10, 50, 50


def train_once(model_dir: Path, data: Path, out: Path, iters: int, monitored: bool) -> dict:
    """One training, with or without the monitor: its steady pace (tokens/s between the first and
    the last report) and, monitored, the time spent in ``HealthMonitor.observe``."""
    import types

    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.cli_ui import make_console
    from mlx_lm.tuner.datasets import CacheDataset, load_dataset
    from mlx_lm.tuner.trainer import TrainingArgs, TrainingCallback, train
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load

    make_console().quiet = True  # mlx-lm's table would only slow the measured loop
    np.random.seed(0)  # the same batches and LoRA initialisation for every variant
    mx.random.seed(0)
    model, tokenizer = load(str(model_dir))
    model.freeze()
    linear_to_lora_layers(model, 2, dict(TINY_LORA))
    ns = types.SimpleNamespace(data=str(data), train=True, test=False, mask_prompt=True,
                               hf_dataset=None)
    train_set, valid_set, _ = load_dataset(ns, tokenizer)
    out.mkdir(parents=True)
    writer = ev.EventWriter(out / "metrics.jsonl")
    monitor = HealthMonitor(vocab_size=model_vocab_size(model_dir), val_batches=1) \
        if monitored else None
    spent = {"wall": 0.0, "cpu": 0.0, "calls": 0}
    reports = []  # (perf_counter at the end of the report's callback, trained tokens)

    def emit(event):
        writer.append(event)
        if monitor is not None:
            wall, cpu = time.perf_counter(), time.thread_time()
            found = monitor.observe(event)
            spent["wall"] += time.perf_counter() - wall
            spent["cpu"] += time.thread_time() - cpu
            spent["calls"] += 1
            for finding in found:
                writer.append(finding)

    class Recorder(TrainingCallback):
        def on_train_loss_report(self, info):
            emit(ev.Train(iter=info["iteration"], loss=info["train_loss"],
                          lr=float(info["learning_rate"]), it_per_sec=info["iterations_per_second"],
                          tokens_per_sec=info["tokens_per_second"],
                          trained_tokens=int(info["trained_tokens"]),
                          peak_mem_gb=info["peak_memory"]))
            reports.append((time.perf_counter(), int(info["trained_tokens"])))

        def on_val_loss_report(self, info):
            emit(ev.Val(iter=info["iteration"] + 1, loss=info["val_loss"], seconds=info["val_time"]))

    args = TrainingArgs(batch_size=8, iters=iters, val_batches=1, steps_per_report=REPORT_EVERY,
                        steps_per_eval=EVAL_EVERY, steps_per_save=SAVE_EVERY,
                        adapter_file=out / "adapters.safetensors", max_seq_length=2048)
    optimizer = optim.Adam(learning_rate=TINY_LEARNING_RATE)
    start = time.perf_counter()
    train(model=model, optimizer=optimizer, train_dataset=CacheDataset(train_set),
          val_dataset=CacheDataset(valid_set), args=args, training_callback=Recorder())
    seconds = time.perf_counter() - start
    writer.close()
    (first_at, first_tokens), (last_at, last_tokens) = reports[0], reports[-1]
    return {"tokens_per_sec": (last_tokens - first_tokens) / (last_at - first_at),
            "train_seconds": seconds, "steps": iters, **spent}


def monitor_cost_per_event(n: int = 100_000) -> tuple:
    """Microseconds per ``observe`` over a long stream of reports and validations: over all of
    it, its first 10k events and its last 10k."""
    stream = []
    for k in range(1, n + 1):
        it = k * 10
        stream.append(ev.Train(iter=it, loss=2.0 + math.sin(k / 7) * 0.3 + 1 / k, it_per_sec=5.0,
                               tokens_per_sec=500.0, peak_mem_gb=1.0, lr=1e-4))
        if k % 5 == 0:
            stream.append(ev.Val(iter=it, loss=2.2 + math.cos(k / 9) * 0.2))
    monitor = HealthMonitor(vocab_size=49152, val_batches=4)
    chunk = 10_000
    marks = [time.perf_counter()]
    for k, event in enumerate(stream, 1):
        monitor.observe(event)
        if k == chunk or k == len(stream) - chunk:
            marks.append(time.perf_counter())
    marks.append(time.perf_counter())
    return ((marks[-1] - marks[0]) / len(stream) * 1e6, (marks[1] - marks[0]) / chunk * 1e6,
            (marks[-1] - marks[-2]) / chunk * 1e6)


def run_once(model_dir: Path, data: Path, root: Path, name: str, iters: int, checks: bool) -> dict:
    """A real run of the tiny model through start_run, waited for; what its record says."""
    import tomli_w

    from tunedeck.core.config import TrainConfig
    from tunedeck.core.probes import recorded_checks
    from tunedeck.core.runs import start_run

    config_file = root / f"{name}.toml"
    config_file.write_text(tomli_w.dumps({
        "name": name, "model": str(model_dir), "data": str(data), "num_layers": 2,
        "batch_size": 8, "iters": iters, "learning_rate": TINY_LEARNING_RATE,
        "steps_per_report": REPORT_EVERY, "steps_per_eval": EVAL_EVERY, "save_every": SAVE_EVERY,
        "val_batches": 1, "lora_parameters": dict(TINY_LORA), "answer_checks": checks}))
    config = TrainConfig.from_toml(config_file).resolve_paths(root)
    run, process = start_run(config, run_dir=root / name)
    process.wait()
    status = run.read_status()
    assert status.get("state") == "finished", run.train_log.read_text()[-2000:]
    reports = [e for e in ev.read_events(run.metrics_jsonl) if isinstance(e, ev.Train)]
    last = max(int(p.name[:7]) for p in run.adapters.glob("*_resume.json"))
    last_saved = (run.adapters / f"{last:07d}_resume.json").stat().st_mtime
    return {
        # The first report includes compilation; the rest is the steady pace.
        "tokens_per_sec": statistics.median(e.tokens_per_sec for e in reports[1:]),
        "wall": status["ended_at"] - status["started_at"],
        "waited": status["ended_at"] - last_saved,
        "checks": [c.seconds for c in recorded_checks(run.adapters).values()],
        "skipped": run.train_log.read_text().count("skipped: the check of"),
        "checkpoints": len(list(run.adapters.glob("*_resume.json"))),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7,
                    help="pairs of in-process trainings, with and without the monitor")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--run-repeats", type=int, default=3, help="real runs with checks on, and off")
    ap.add_argument("--run-iters", type=int, default=200)
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_model(tmp / "model")
        data = write_persona_dataset(tmp / "data", n_train=200)
        pairs = []
        for i in range(args.repeats):
            order = (False, True) if i % 2 == 0 else (True, False)
            pair = {on: train_once(model_dir, data, tmp / f"{'monitor' if on else 'off'}{i}",
                                   args.iters, on) for on in order}
            pairs.append(pair)
        runs = {True: [], False: []}
        for i in range(args.run_repeats):
            for on in (True, False):
                runs[on].append(run_once(model_dir, data, tmp, f"checks-{'on' if on else 'off'}-{i}",
                                         args.run_iters, on))
    per_event, first_10k, last_10k = monitor_cost_per_event()
    load_after = os.getloadavg()[0]
    monitored = [p[True] for p in pairs]
    share = sum(r["wall"] for r in monitored) / sum(r["train_seconds"] for r in monitored)
    calls = sum(r["calls"] for r in monitored)
    per_call_wall = sum(r["wall"] for r in monitored) / calls * 1e6
    per_call_cpu = sum(r["cpu"] for r in monitored) / calls * 1e6
    per_step = sum(r["wall"] for r in monitored) / sum(r["steps"] for r in monitored) * 1e6
    step_ms = sum(r["train_seconds"] for r in monitored) / sum(r["steps"] for r in monitored) * 1e3
    ratios = sorted(p[True]["tokens_per_sec"] / p[False]["tokens_per_sec"] for p in pairs)
    off = statistics.median(p[False]["tokens_per_sec"] for p in pairs)
    mon = statistics.median(p[True]["tokens_per_sec"] for p in pairs)
    on_runs, off_runs = runs[True], runs[False]
    seconds = [s for r in on_runs for s in r["checks"]]
    checkpoints = sum(r["checkpoints"] for r in on_runs)
    skipped = sum(r["skipped"] for r in on_runs)
    on_rate = statistics.median(r["tokens_per_sec"] for r in on_runs)
    off_rate = statistics.median(r["tokens_per_sec"] for r in off_runs)
    on_wall = statistics.median(r["wall"] for r in on_runs)
    off_wall = statistics.median(r["wall"] for r in off_runs)
    waited = statistics.median(r["waited"] for r in on_runs)
    off_waited = statistics.median(r["waited"] for r in off_runs)
    command = "bench/bench_health.py"
    print(f"machine: {platform.machine()}, {platform.processor() or platform.system()}, "
          f"python {platform.python_version()}")
    print()
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    print(f"| training with the health monitor vs without, tiny model: 1 − the time spent in "
          f"observe / the wall time of train() ({args.repeats} monitored trainings × {args.iters} "
          f"iterations, a report every {REPORT_EVERY}) | `{command}` | ratio {1 - share:.5f} "
          f"(the monitor {share * 100:.3f}% of training) | >= 0.99 | "
          f"{'yes' if 1 - share >= 0.99 else 'no'} |")
    print(f"| the monitor per report, on the training thread, in those trainings ({calls} calls) | "
          f"`{command}` | {per_call_wall:.0f} µs wall, {per_call_cpu:.0f} µs CPU ({per_step:.1f} µs "
          f"a step of {step_ms:.0f} ms) | — | — |")
    print(f"| cross-check: tokens/s with the monitor vs without, between the first and last "
          f"reports (median of {args.repeats} alternating pairs' ratios) | `{command}` | "
          f"{mon:,.0f} vs {off:,.0f}: ratio {statistics.median(ratios):.3f} (pairs "
          f"{ratios[0]:.3f}–{ratios[-1]:.3f}) | reported | — |")
    print(f"| the monitor's own cost per event (100k reports + 20k validations) | `{command}` | "
          f"{per_event:.1f} µs (first 10k events {first_10k:.1f} µs, last 10k {last_10k:.1f} µs) "
          f"| — | — |")
    print(f"| answer checks per checkpoint, in their own process (median of {len(seconds)}) | "
          f"`{command}` | {statistics.median(seconds):.2f} s per check (max {max(seconds):.2f} s) | "
          f"reported | — |")
    print(f"| training's tokens/s with answer checks on vs off, real runs (median report, "
          f"{args.run_repeats} runs each) | `{command}` | {on_rate:,.0f} vs {off_rate:,.0f}: "
          f"ratio {on_rate / off_rate:.3f} | reported | — |")
    print(f"| a run's wall time with answer checks on vs off ({args.run_iters} iterations, a "
          f"checkpoint every {SAVE_EVERY}) | `{command}` | {on_wall:.1f} s vs {off_wall:.1f} s "
          f"(+{(on_wall - off_wall) / max(1, checkpoints // max(1, args.run_repeats)):.2f} s per "
          f"checkpoint) | reported | — |")
    print(f"| a finished run waiting for its last check (last checkpoint → finished) | "
          f"`{command}` | {waited:.2f} s (without checks: {off_waited:.2f} s) | reported | — |")
    print()
    print(f"Notes: the monitor runs on the training thread once per report (every "
          f"{REPORT_EVERY} steps here), on floats mlx-lm has already read out of MLX: it forces no "
          f"evaluation, so its whole cost to training is the time inside observe, measured around "
          f"each call. The end-to-end ratio measures the same thing through the noise of the "
          f"machine: its pairs spread {(ratios[-1] - ratios[0]) * 100:.0f}% here, while the "
          f"monitor's share is {share * 100:.3f}%. Load average {load_before:.1f} at the start, {load_after:.1f} "
          f"at the end (this bench's own processes included).")
    print()
    print(f"{skipped} of {checkpoints} checkpoints had their check skipped because a newer "
          f"checkpoint came while one ran (only the newest waits). The checks run at nice 10 beside "
          f"the trainer, so on a loaded machine a check takes longer rather than slowing "
          f"training. The base model's answers are recorded once per run, by its first check.")


if __name__ == "__main__":
    main()
