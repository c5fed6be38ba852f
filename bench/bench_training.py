"""Training speed under tunedeck vs plain `mlx_lm.lora`, same model, data and config.

Both read mlx-lm's own log (tok/s per report); the first report (compilation warm-up) is dropped.
Runs alternate between the two so machine noise hits both alike; the median of each is compared.
Budget: tunedeck / plain >= 0.98.

    .venv/bin/python bench/bench_training.py [--repeats 3] [--iters 200]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import TINY_LEARNING_RATE, TINY_LORA  # noqa: E402
from tests.tinymodel import build_tiny_model, write_persona_dataset  # noqa: E402
from tunedeck.core.logparse import parse_file  # noqa: E402
from tunedeck.core.events import Train  # noqa: E402

BIN = Path(sys.executable).parent


def tokens_per_sec(log: Path) -> float:
    rates = [e.tokens_per_sec for e in parse_file(log) if isinstance(e, Train) and e.tokens_per_sec]
    return statistics.mean(rates[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    from tunedeck.core.config import LoraParameters, TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "model")
        data = write_persona_dataset(tmp / "data", n_train=200)
        config = TrainConfig(model=str(model), data=str(data), num_layers=2, batch_size=8,
                             iters=args.iters, learning_rate=TINY_LEARNING_RATE, steps_per_report=20,
                             steps_per_eval=10**6, save_every=10**6, val_batches=1,
                             lora_parameters=LoraParameters(**TINY_LORA))
        toml = tmp / "cfg.toml"
        toml.write_text(config.to_toml())
        yaml = tmp / "cfg.yaml"
        yaml.write_text(config.to_mlx_yaml())
        plain, ours = [], []
        for i in range(args.repeats):
            log = tmp / f"plain{i}.log"
            with open(log, "w") as f:
                subprocess.run([str(BIN / "mlx_lm.lora"), "-c", str(yaml), "--train",
                                "--adapter-path", str(tmp / f"plain{i}")],
                               stdout=f, stderr=subprocess.STDOUT, check=True, cwd=tmp)
            plain.append(tokens_per_sec(log))
            run = tmp / f"ours{i}"
            subprocess.run([str(BIN / "tunedeck"), "train", str(toml), "--run-dir", str(run)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=tmp)
            ours.append(tokens_per_sec(run / "train.log"))
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"machine: {platform.machine()}, {platform.processor() or platform.system()}, "
          f"python {platform.python_version()}")
    print("| what | plain mlx_lm.lora | tunedeck | ratio | budget |")
    print("|---|---|---|---|---|")
    print(f"| tiny-model LoRA training, tokens/s (median of {args.repeats}, {args.iters} iters) "
          f"| {p:,.0f} | {o:,.0f} | {o / p:.3f} | >= 0.98 |")


if __name__ == "__main__":
    main()
