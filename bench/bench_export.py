"""Export time: `tunedeck export --to mlx` (before its verification) vs `mlx_lm.fuse` alone.

The same checkpoint on both sides, each in a fresh process (imports included, as a user runs
them): mlx-lm's fuse gets an adapter directory whose adapters.safetensors is that checkpoint;
tunedeck's export is called with verify=False, which stops it where verification would start.
Runs alternate (fuse, export, fuse, export, …) so that noise from other work on the machine falls
on both alike; the median of each side is reported. Budget: export / fuse <= 1.2.

Models: the tiny test model with an adapter trained here, and the demo model (SmolLM2-135M in the
form this machine trains, float32 on a CPU) when it is built under TUNEDECK_HOME, with an
untrained rank-8 adapter on every projection.

    .venv/bin/python bench/bench_export.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_chat import train_tiny_adapter, untrained_adapter  # noqa: E402

EXPORT = ("import sys; from pathlib import Path; from tunedeck.core.export import ExportRequest, export; "
          "export(ExportRequest(run=Path(sys.argv[1]), to='mlx', checkpoint=sys.argv[2], out=Path(sys.argv[3])),"
          " verify=False)")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def checkpoint_adapter_dir(checkpoint: Path, out: Path) -> Path:
    """An adapter directory mlx_lm.fuse reads: the checkpoint as its final weights."""
    out.mkdir(parents=True)
    shutil.copy(checkpoint.parent / "adapter_config.json", out / "adapter_config.json")
    (out / "adapters.safetensors").symlink_to(checkpoint.resolve())
    return out


def compare(model: Path, run: Path, iteration: int, repeats: int, tmp: Path) -> dict:
    checkpoint = run / "adapters" / f"{iteration:07d}_adapters.safetensors"
    adapter_dir = checkpoint_adapter_dir(checkpoint, tmp / f"adapter-{model.name}")
    times = {"fuse": [], "export": []}
    for i in range(repeats):
        fused, exported = tmp / f"fused-{i}", tmp / f"exported-{i}"
        times["fuse"].append(timed([sys.executable, "-m", "mlx_lm", "fuse", "--model", str(model),
                                    "--adapter-path", str(adapter_dir), "--save-path", str(fused)]))
        times["export"].append(timed([sys.executable, "-c", EXPORT, str(run), str(iteration), str(exported)]))
        shutil.rmtree(fused)
        shutil.rmtree(exported)
    return {side: statistics.median(values) for side, values in times.items()}


def demo_run(tiny_run: Path, tmp: Path) -> Path | None:
    """A run directory like the tiny one whose model is the demo and whose checkpoint 4 is an
    untrained adapter for it (training the demo here would take minutes)."""
    from tunedeck.core.demo_model import demo_model_dir, is_demo_model_built
    from tunedeck.core.training_setup import read_mlx_args
    from tunedeck.core.rundir import RunDirectory

    demo = demo_model_dir()
    if not is_demo_model_built(demo):
        return None
    run = tmp / "demo-run"
    shutil.copytree(tiny_run, run)
    tiny_model = read_mlx_args(RunDirectory(tiny_run), None)["model"]
    yaml = run / "mlx_lm.yaml"
    yaml.write_text(yaml.read_text().replace(str(tiny_model), str(demo)))
    adapters = run / "adapters"
    untrained_adapter(demo, tmp / "demo-adapter")
    for name in ("adapter_config.json", "adapters.safetensors"):
        shutil.copy(tmp / "demo-adapter" / name, adapters / name)
    shutil.copy(tmp / "demo-adapter" / "adapters.safetensors", adapters / "0000004_adapters.safetensors")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, adapters = train_tiny_adapter(tmp)
        cases = [("tiny model", model, adapters.parent)]
        demo = demo_run(adapters.parent, tmp)
        if demo is not None:
            from tunedeck.core.demo_model import demo_model_dir

            cases.append(("demo model (SmolLM2-135M)", demo_model_dir(), demo))
        command = f"`bench/bench_export.py --repeats {args.repeats}`"
        print("| what | command | measured | budget | met |")
        print("|---|---|---|---|---|")
        for label, model_dir, run in cases:
            result = compare(model_dir, run, 4, args.repeats, tmp)
            ratio = result["export"] / result["fuse"]
            print(f"| export of one checkpoint to MLX, before verification, {label}, median of "
                  f"{args.repeats} | {command} | {result['export']:.2f} s vs `mlx_lm.fuse` "
                  f"{result['fuse']:.2f} s: ratio {ratio:.2f} | ≤ 1.2 | {'yes' if ratio <= 1.2 else 'no'} |",
                  flush=True)
            command = "same"
        print("\nNotes\n- Both sides are whole processes: imports, loading the base model, fusing, "
              "saving. The verification that follows an export (greedy answers from base + adapter "
              "and from the export) is not timed here.")
        if demo is None:
            print("- The demo model is not built under TUNEDECK_HOME, so only the tiny model was "
                  "measured (`tunedeck demo --no-open` builds it).")

if __name__ == "__main__":
    main()
