"""Run the benchmarks and write bench/BENCHMARKS.md from what they print, and nothing else.

    make bench        (or: .venv/bin/python bench/run_all.py [NAME ...])

Each entry of BENCHES is one script and its arguments; the script prints markdown (a table, and
notes if it has any) and exits 0. Adding a benchmark is adding its entry. The file is written
whole from this run: no row is carried over from another day or another load. Figures depend on
the machine and on what else runs on it, so the file records the machine, the BLAS MLX gets and
the load average before and after each benchmark; a figure taken at a load above the number of
cores is marked as such.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# (script, arguments, what it measures). Order: cheap first.
BENCHES = [
    ("bench_logparse", [], "log parsing"),
    ("bench_data", [], "Data pane core: line index, row access, validation"),
    ("bench_data_pane", [], "Data pane in a real terminal"),
    ("bench_tui", [], "TUI first frame, live updates, loss plot"),
    ("bench_idle", [], "idle CPU of the app following a quiet run"),
    ("bench_form_keys", [], "Hyperparameters form keystrokes"),
    ("bench_training", ["--pairs", "10", "--iters", "300"], "training under tunedeck vs mlx_lm.lora"),
    ("bench_distributed", ["--pairs", "2", "--iters", "200"], "2 local ranks vs 1 process"),
    ("bench_health", [], "run health monitor cost"),
    ("bench_demo", [], "the demo run and its first eval"),
    ("bench_chat", [], "chat speed with an adapter"),
    ("bench_generate", [], "data generate answers"),
    ("bench_export", [], "export vs mlx_lm.fuse"),
    ("bench_serve", [], "serve vs mlx_lm.server"),
]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
        mem_text = f", {mem} GB RAM"
    except (OSError, ValueError, IndexError):
        mem_text = ""
    versions = ", ".join(f"{n} {_version(n)}" for n in ("mlx", "mlx-lm", "textual"))
    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{mem_text}, "
            f"Python {platform.python_version()}, {versions}")


def blas_section() -> str:
    """The BLAS a tunedeck-started process gets, measured now against MLX's reference BLAS (the
    check's own child process, run twice; the doctor's cached figure is not reused)."""
    sys.path.insert(0, str(REPO))
    from tunedeck.core import blas

    plain = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", blas.REEXEC_MARK)}
    fast_env = blas.fast_blas_env(plain)
    reference = blas._check(plain) or {}
    rows = [("MLX's reference BLAS (bundled with mlx[cpu])", reference)]
    library = fast_env.get("LD_PRELOAD", "").split(":")[0]
    if library:
        coretype = fast_env.get("OPENBLAS_CORETYPE")
        rows.append((library + (f", OPENBLAS_CORETYPE={coretype}" if coretype else ""),
                     blas._check(fast_env) or {}))
    lines = ["| BLAS under MLX | kernels | 1024² float32 matmul | vs reference | error vs numpy |",
             "|---|---|---|---|---|"]
    for what, result in rows:
        gflops, base = result.get("gflops"), reference.get("gflops")
        ratio = f"{gflops / base:.1f}x" if gflops and base else "—"
        lines.append(f"| {what} | {result.get('core') or '—'} | "
                     f"{f'{gflops:.1f} GFLOP/s' if gflops else 'failed'} | {ratio} | "
                     f"{result.get('error', float('nan')):.1e} |")
    if not library:
        lines.append(f"\nNo fast BLAS on this machine: {blas.install_command()}")
    return ("## BLAS under MLX\n\nCommand: `.venv/bin/python -m tunedeck.core.blas` with and "
            f"without the library preloaded (load average {_load():.1f})\n\n" + "\n".join(lines) + "\n")


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# Before each benchmark the load the previous one left is let die down: the 1-minute average decays
# with a time constant of a minute, so a benchmark that kept both cores busy would otherwise mark
# the next one as run on a busy machine.
SETTLE_BELOW = 0.5  # per core
SETTLE_FOR_AT_MOST_S = 45.0


def settle() -> float:
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + SETTLE_FOR_AT_MOST_S
    while _load() > SETTLE_BELOW * cores and time.monotonic() < deadline:
        time.sleep(2.0)  # the kernel's average moves every 5 s: nothing to await but time
    return _load()


def bench_env() -> dict:
    """A benchmark's environment: the BLAS a tunedeck-started process gets, for in-process MLX
    work too; and bytecode written and read as on a user's machine (pip compiles mlx-lm's at
    install; a PYTHONDONTWRITEBYTECODE in this shell would make every tunedeck process, and only
    tunedeck's, recompile its modules on each start)."""
    from tunedeck.core.blas import fast_blas_env

    env = fast_blas_env(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_sources() -> None:
    import compileall

    for folder in ("core", "tui", "themes", "bench"):
        compileall.compile_dir(str(REPO / folder), quiet=1)


def run_one(script: str, args: list[str], what: str) -> str:
    print(f"running {script} {' '.join(args)} ...", file=sys.stderr, flush=True)
    before = settle()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(HERE / f"{script}.py"), *args], capture_output=True,
                          text=True, cwd=REPO, stdin=subprocess.DEVNULL, env=bench_env())
    took, after = time.monotonic() - started, _load()
    # Only the load before counts against the machine: the load after includes the benchmark's own
    # processes (training pairs and two ranks keep both cores busy by design).
    busy = " — **busy machine: figures not comparable**" if before > (os.cpu_count() or 1) else ""
    command = " ".join([".venv/bin/python", f"bench/{script}.py", *args])
    if proc.returncode == 0:
        body = proc.stdout.strip()
    else:
        body = f"failed with exit code {proc.returncode}:\n\n```\n{proc.stderr.strip()[-2000:]}\n```"
    return (f"## {what}\n\nCommand: `{command}` ({took:.0f} s; load average {before:.1f} before, "
            f"{after:.1f} after, its own processes included{busy})\n\n{body}\n")


def main() -> None:
    wanted = sys.argv[1:]
    known = {name for name, _, _ in BENCHES}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SystemExit(f"run_all.py: unknown benchmark {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    entries = [(name, args, what) for name, args, what in BENCHES
               if (not wanted or name in wanted) and (HERE / f"{name}.py").exists()]
    header = (f"# Benchmarks\n\nWritten by `bench/run_all.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}"
              f" (`make bench`); every figure below is from that run.\n\n"
              f"Machine: {machine()}.\nLoad average at start: {_load():.2f}.\n")
    compile_sources()
    sections = [blas_section()] + [run_one(name, args, what) for name, args, what in entries]
    text = header + "\n" + "\n".join(sections)
    from tunedeck.core.rundir import write_atomic

    write_atomic(HERE / "BENCHMARKS.md", text)
    print(text)


if __name__ == "__main__":
    main()
