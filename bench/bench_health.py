"""What run health costs training: the monitor on every event, and answer checks at checkpoints.

1. The monitor. mlx-lm's own ``train()`` trains the tiny model in this process with a training
   callback that does what the runner's does (an event per report, appended to a metrics.jsonl),
   with and without each event also fed to a ``HealthMonitor``, alternating so machine noise hits
   both alike. mlx-lm's tokens/s leaves out the time spent in callbacks, so throughput here is
   trained tokens over the wall time of the whole ``train()`` call. Budget: monitor / off >= 0.99.
   The monitor's own cost per event is also timed on a long synthetic stream, since a 1%
   difference is within the noise of one shared machine.
2. Answer checks as they run: real runs through ``start_run`` (the runner, its supervisor and,
   with ``answer_checks`` on, one ``python -m tunedeck.core.probes`` process per checkpoint at a
   lower priority), on and off alternating. Reported: the seconds each check took (from its
   ``NNNNNNN_answers.json``), training's tokens/s while checks run beside it (median of the
   reports) against the runs without, how long a finished run waited for its last check, and
   the checks skipped because a newer checkpoint came while one ran.

    .venv/bin/python bench/bench_health.py [--repeats 5] [--iters 200] [--run-repeats 3] [--run-iters 200]
"""

from __future__ import annotations

import argparse
import math
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


def train_once(model_dir: Path, data: Path, out: Path, iters: int, variant: str) -> float:
    """Trained tokens per second of wall time, ``variant`` "off" or "monitor"."""
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
        if variant != "off" else None
    tokens = [0]

    def emit(event):
        writer.append(event)
        if monitor is not None:
            for finding in monitor.observe(event):
                writer.append(finding)

    class Recorder(TrainingCallback):
        def on_train_loss_report(self, info):
            tokens[0] = int(info["trained_tokens"])
            emit(ev.Train(iter=info["iteration"], loss=info["train_loss"],
                          lr=float(info["learning_rate"]), it_per_sec=info["iterations_per_second"],
                          tokens_per_sec=info["tokens_per_second"],
                          trained_tokens=tokens[0], peak_mem_gb=info["peak_memory"]))

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
    return tokens[0] / seconds


def monitor_cost_per_event(n: int = 100_000) -> float:
    """Microseconds per ``observe`` over a long stream of reports and validations."""
    stream = []
    for k in range(1, n + 1):
        it = k * 10
        stream.append(ev.Train(iter=it, loss=2.0 + math.sin(k / 7) * 0.3 + 1 / k, it_per_sec=5.0,
                               tokens_per_sec=500.0, peak_mem_gb=1.0, lr=1e-4))
        if k % 5 == 0:
            stream.append(ev.Val(iter=it, loss=2.2 + math.cos(k / 9) * 0.2))
    monitor = HealthMonitor(vocab_size=49152, val_batches=4)
    start = time.perf_counter()
    for event in stream:
        monitor.observe(event)
    return (time.perf_counter() - start) / len(stream) * 1e6


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
    ap.add_argument("--repeats", type=int, default=5, help="in-process trainings per variant")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--run-repeats", type=int, default=3, help="real runs with checks on, and off")
    ap.add_argument("--run-iters", type=int, default=200)
    args = ap.parse_args()

    variants = ("off", "monitor")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_model(tmp / "model")
        data = write_persona_dataset(tmp / "data", n_train=200)
        rates = {v: [] for v in variants}
        for i in range(args.repeats):
            for v in variants:
                rates[v].append(train_once(model_dir, data, tmp / f"{v}{i}", args.iters, v))
        runs = {True: [], False: []}
        for i in range(args.run_repeats):
            for on in (True, False):
                runs[on].append(run_once(model_dir, data, tmp, f"checks-{'on' if on else 'off'}-{i}",
                                         args.run_iters, on))
    per_event = monitor_cost_per_event()
    off, mon = (statistics.median(rates[v]) for v in variants)
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
    print(f"| training with the health monitor vs without, tiny model, tokens/s over the wall time "
          f"of train() (median of {args.repeats} × {args.iters} iterations, alternating) | "
          f"`{command}` | {mon:,.0f} vs {off:,.0f}: ratio {mon / off:.3f} | >= 0.99 | "
          f"{'yes' if mon / off >= 0.99 else 'no'} |")
    print(f"| the monitor's own cost per event (100k reports + 20k validations) | `{command}` | "
          f"{per_event:.1f} µs | — | — |")
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
    print(f"Notes: {skipped} of {checkpoints} checkpoints had their check skipped because a newer "
          f"checkpoint came while one ran (only the newest waits). The checks run at nice 10 beside "
          f"the trainer, so on a loaded machine a check takes longer rather than slowing "
          f"training. The base model's answers are recorded once per run, by its first check.")


if __name__ == "__main__":
    main()
