"""What run health costs training: the monitor on every event, and answer checks per checkpoint.

mlx-lm's own ``train()`` trains the tiny model in this process with a training callback that does
what the runner's does (an event per report, appended to a metrics.jsonl). Three variants,
alternating so machine noise hits all alike:

* off: events only;
* monitor: events, each also fed to a ``HealthMonitor`` (findings appended too);
* answer checks: the monitor, and after every checkpoint ``probes.check_model`` on the weights
  being trained (between steps, in the training process).

mlx-lm's tokens/s leaves out the time spent in callbacks, so throughput here is trained tokens
over the wall time of the whole ``train()`` call. Budget: monitor / off >= 0.99. The monitor's
own cost per event is also timed on a long synthetic stream, since a 1% difference is within the
noise of one shared machine.

    .venv/bin/python bench/bench_health.py [--repeats 5] [--iters 200]
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


def train_once(model_dir: Path, data: Path, out: Path, iters: int, variant: str, probes) -> dict:
    import types

    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.cli_ui import make_console
    from mlx_lm.tuner.datasets import CacheDataset, load_dataset
    from mlx_lm.tuner.trainer import TrainingArgs, TrainingCallback, train
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load

    from tunedeck.core.probes import check_model

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
    checks: list[float] = []
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
            if variant == "answer checks" and info["iteration"] % SAVE_EVERY == 0:
                result = check_model(model, tokenizer, probes, info["iteration"])
                checks.append(result.seconds)
                for finding in result.findings:
                    writer.append(finding)

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
    return {"tokens_per_sec": tokens[0] / seconds, "checks": checks}


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    from mlx_lm.utils import load

    from tunedeck.core.probes import ProbeSettings, default_probes, record_base_answers

    variants = ("off", "monitor", "answer checks")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_model(tmp / "model")
        data = write_persona_dataset(tmp / "data", n_train=200)
        probes = default_probes(data)
        model, tokenizer = load(str(model_dir))
        start = time.perf_counter()
        record_base_answers(model, tokenizer, probes, ProbeSettings())
        base_seconds = time.perf_counter() - start
        rates = {v: [] for v in variants}
        checks: list[float] = []
        for i in range(args.repeats):
            for v in variants:
                result = train_once(model_dir, data, tmp / f"{v.replace(' ', '-')}{i}", args.iters, v, probes)
                rates[v].append(result["tokens_per_sec"])
                checks += result["checks"]
    per_event = monitor_cost_per_event()
    off, mon, chk = (statistics.median(rates[v]) for v in variants)
    print(f"machine: {platform.machine()}, {platform.processor() or platform.system()}, "
          f"python {platform.python_version()}")
    print("| what | measured | budget | met |")
    print("|---|---|---|---|")
    print(f"| training with the health monitor vs without, tiny model, tokens/s over the wall time "
          f"of train() (median of {args.repeats} × {args.iters} iterations, variants alternating, "
          f"a report every {REPORT_EVERY}) | {mon:,.0f} vs {off:,.0f}: ratio {mon / off:.3f} | "
          f">= 0.99 | {'yes' if mon / off >= 0.99 else 'no'} |")
    print(f"| the monitor's own cost per event (100k reports + 20k validations) | "
          f"{per_event:.1f} µs | — | — |")
    print(f"| answer checks per checkpoint, {len(probes)} probes × ≤48 tokens greedy, between "
          f"steps (median of {len(checks)}) | {statistics.median(checks):.2f} s per checkpoint "
          f"(training with them: {chk / off:.3f} of without at a checkpoint every {SAVE_EVERY} "
          f"iterations); base answers once: {base_seconds:.2f} s | reported | — |")


if __name__ == "__main__":
    main()
