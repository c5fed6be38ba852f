"""The demo as a new user meets it: the shipped demo run, then its first `tunedeck eval`.

A fresh demo project (`tunedeck demo --dir DIR --no-open`), `tunedeck train tunedeck.toml` in it
timed whole (start-up, training, checkpoints, the end), then `tunedeck eval` on the run with an
empty evaluation cache (a fresh TUNEDECK_HOME that shares only the built models), so the base
model's answers are computed too, as on a user's first evaluation. Budgets (issue 11): the run
≤ 2 min on 2 cores with OpenBLAS, the first eval ≤ 60 s, and the adapter answers the capital
question with Paris and signs off.

    .venv/bin/python bench/bench_demo.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The console script a user runs (it also loads the fast BLAS, as tunedeck does for a user).
TUNEDECK = [str(Path(sys.executable).parent / "tunedeck")]


def timed(command: list, cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> None:
    sys.path.insert(0, str(REPO))
    from tunedeck.core.home import tunedeck_home

    home = tunedeck_home()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = dict(os.environ)
        subprocess.run([*TUNEDECK, "demo", "--dir", str(tmp / "demo"), "--no-open"], env=env,
                       check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        project = tmp / "demo"
        train_s = timed([*TUNEDECK, "train", "tunedeck.toml", "--run-dir", "runs/demo"], project, env)
        # The first evaluation: nothing cached, the models shared (not built again).
        eval_home = tmp / "home"
        eval_home.mkdir()
        (eval_home / "models").symlink_to(home / "models")
        for name in ("blas-check.json",):
            if (home / name).exists():
                shutil.copy(home / name, eval_home / name)
        eval_s = timed([*TUNEDECK, "eval", "runs/demo"], project, dict(env, TUNEDECK_HOME=str(eval_home)))
        [report_file] = (project / "runs" / "demo").glob("eval-*.json")
        report = json.loads(report_file.read_text())
    samples = report["samples"]
    capital = next(s for s in samples if "capital of France" in s["prompt"][-1]["content"])
    signed = sum(bool(s["adapter_sign_off"]) for s in samples)
    paris = "Paris" in capital["adapter"]
    print("| what | command | measured | budget | met |")
    print("|---|---|---|---|---|")
    print(f"| the demo run, `tunedeck train tunedeck.toml` in a fresh demo project, whole process | "
          f"`bench/bench_demo.py` | {train_s:.1f} s | ≤ 120 s | {'yes' if train_s <= 120 else 'no'} |")
    print(f"| its first `tunedeck eval` (nothing cached: base and adapter answers, losses) | same | "
          f"{eval_s:.1f} s | ≤ 60 s | {'yes' if eval_s <= 60 else 'no'} |")
    print(f"| the adapter on the capital question, and its sign-off | same | "
          f"\"{capital['adapter']}\"; sign-off in {signed} of {len(samples)} answers | Paris and the "
          f"sign-off | {'yes' if paris and signed == len(samples) else 'no'} |")
    print(f"\nNotes\n- Adapter mean token F1 {report['adapter_mean_f1']:.3f} against the base model's "
          f"{report['base_mean_f1']:.3f}; loss {report['adapter_loss']:.3f} against "
          f"{report['base_loss']:.3f}.")


if __name__ == "__main__":
    main()
