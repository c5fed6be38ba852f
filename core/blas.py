"""A fast BLAS under MLX on Linux.

The ``mlx[cpu]`` wheel links MLX against the reference BLAS it bundles, which multiplies matrices
at a few GFLOP/s. An optimized library the machine already has (the distribution's OpenBLAS, or
MKL) exports the same CBLAS symbols: loaded first, through ``LD_PRELOAD``, it takes MLX's matrix
products over, about ten times faster on two cores. It has to be there before MLX is loaded: a
child process gets it in its environment (``fast_blas_env``), and the console script loads it
into itself at start (``reexec_with_fast_blas``).

OpenBLAS picks its kernels from the CPU it detects, and older releases fall back to generic ones
(``Prescott``) on CPUs newer than they are. Then the best kernel family the CPU's flags support
is tried in a child process and kept only if its matrix product agrees with numpy's; a kernel
the CPU cannot run dies there with SIGILL, not in the user's run. That check costs about a
second, so its result is cached in the home directory, keyed by the library file and the CPU.

A user's own ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` are never overridden, and
``TUNEDECK_BLAS=reference`` keeps MLX on its own BLAS.

``python -m tunedeck.core.blas`` is the check itself: it runs in the environment under test
and prints one JSON object.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

# Sonames, best first: Fedora's threaded OpenBLAS, everyone else's OpenBLAS, then MKL.
FAST_LIBRARIES = ("libopenblasp.so.0", "libopenblas.so.0", "libmkl_rt.so.2", "libmkl_rt.so")
# Kernel families OpenBLAS falls back to when it does not know the CPU.
GENERIC_CORES = frozenset({"prescott", "katmai", "coppermine", "northwood", "banias", "generic"})
# (kernel family, CPU flags it needs), best first.
KERNEL_FAMILIES = (
    ("SkylakeX", frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"})),
    ("Haswell", frozenset({"avx2", "fma"})),
    ("SandyBridge", frozenset({"avx"})),
)
USER_SETTINGS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
CHOICE_VARIABLE = "TUNEDECK_BLAS"  # "reference": leave MLX's own BLAS in place
REEXEC_MARK = "TUNEDECK_BLAS_REEXEC"
CACHE_NAME = "blas-check.json"
NOTICE_MARK = "blas-notice-shown"
CHECK_VERSION = 2
# fp32 products of this size agree with a float64 one to ~1e-6 relative; a wrong kernel is off by
# whole units.
_TOLERANCE = 1e-4
_CHECK_TIMEOUT_S = 60.0


@dataclass
class BlasReport:
    """What ``tunedeck doctor`` says about the BLAS a tunedeck-started process gets."""

    library: str                 # a path, or "reference" (the one bundled with MLX)
    core: Optional[str]          # OpenBLAS's kernel family, "MKL", or None (reference)
    gflops: Optional[float]      # a 1024² fp32 matmul in MLX, None when it could not be measured
    reference_gflops: Optional[float] = None  # the same matmul on the bundled reference BLAS
    coretype_chosen: Optional[str] = None  # set when tunedeck picked OPENBLAS_CORETYPE
    problem: Optional[str] = None           # one line: what is wrong and the fix

    @property
    def is_reference(self) -> bool:
        return self.library == "reference"


# ----------------------------------------------------------------------------- finding a library


def _ldconfig_cache() -> dict[str, str]:
    """soname → path for this machine's architecture, from the dynamic linker's cache."""
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None)
    if ldconfig is None:
        return {}
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10,
                                 stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    # ldconfig tags each entry with its ABI, "(libc6,x86-64)": keep this machine's.
    arch = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(platform.machine(), "")
    found: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, rest = line.strip().partition(" (")
        tag, _, path = rest.partition(") => ")
        if path and (not arch or arch in tag) and name not in found:
            found[name] = path
    return found


def find_fast_blas() -> Optional[str]:
    """The path of the best optimized BLAS on this machine, or None."""
    if not sys.platform.startswith("linux"):
        return None  # macOS: MLX uses Accelerate already
    cache = _ldconfig_cache()
    for soname in FAST_LIBRARIES:
        if soname in cache and os.path.exists(cache[soname]):
            return cache[soname]
        # pip's mkl package puts MKL into the environment's lib/, which ldconfig does not list.
        local = Path(sys.prefix) / "lib" / soname
        if local.is_file():
            return str(local)
    if not cache:
        import ctypes.util

        name = ctypes.util.find_library("openblas")
        if name:
            return name  # a soname the dynamic linker resolves by itself
    return None


def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def kernel_candidates(flags: frozenset[str]) -> list[str]:
    """OpenBLAS kernel families the CPU's flags allow, best first."""
    return [name for name, needs in KERNEL_FAMILIES if needs <= flags]


# ----------------------------------------------------------------------------- the check


def _check(env: dict) -> Optional[dict]:
    """Run this module's check in a child with ``env``: None when the child died (SIGILL)."""
    try:
        done = subprocess.run([sys.executable, "-m", "tunedeck.core.blas"], env=env,
                              capture_output=True, text=True, timeout=_CHECK_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _agrees(result: Optional[dict]) -> bool:
    """The preloaded library was mapped (ld.so only warns when it cannot preload) and MLX's
    product with it matches numpy's."""
    return (result is not None and bool(result.get("mapped"))
            and result.get("error", 1.0) <= _TOLERANCE)


def _with_library(env: dict, library: str) -> dict:
    preload = env.get("LD_PRELOAD", "")
    return {**env, "LD_PRELOAD": f"{library}:{preload}" if preload else library}


def _decide(library: Optional[str], env: dict) -> dict:
    """The check's verdict for ``library`` under ``env`` (the user's settings included)."""
    if library is None:
        measured = _check(env) or {}
        return {"library": None, "core": None, "gflops": measured.get("gflops"), "coretype": None}
    base_env = _with_library(env, library)
    result = _check(base_env)
    if result is None or not _agrees(result):
        # The library does not run, or gets products wrong: MLX keeps its own BLAS.
        reference = _check(env) or {}
        return {"library": None, "core": None, "gflops": reference.get("gflops"),
                "coretype": None, "rejected": library}
    verdict = {"library": library, "core": result.get("core"), "gflops": result.get("gflops"),
               "coretype": None, "reference_gflops": (_check(env) or {}).get("gflops")}
    core = (result.get("core") or "").lower()
    if core in GENERIC_CORES and not any(env.get(v) for v in USER_SETTINGS):
        for family in kernel_candidates(_cpu_flags()):
            tried = _check({**base_env, "OPENBLAS_CORETYPE": family})
            if tried is not None and _agrees(tried):
                verdict.update(core=tried.get("core") or family, gflops=tried.get("gflops"),
                               coretype=family)
                break
    return verdict


def _cache_key(library: Optional[str], env: dict) -> str:
    parts = [f"v{CHECK_VERSION}", sys.executable, library or "reference"]
    if library and os.path.exists(library):
        stat = os.stat(os.path.realpath(library))
        parts += [os.path.realpath(library), str(stat.st_size), str(stat.st_mtime_ns)]
    parts += [f"{v}={env.get(v, '')}" for v in USER_SETTINGS]
    parts.append(hashlib.sha1(" ".join(sorted(_cpu_flags())).encode()).hexdigest())
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def _cache_path() -> Path:
    from .home import tunedeck_home

    return tunedeck_home() / CACHE_NAME


def _verdict(library: Optional[str], env: dict) -> dict:
    """The check's verdict, from the cache when this library, CPU and settings were checked."""
    path, key = _cache_path(), _cache_key(library, env)
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    if key in cached:
        return cached[key]
    verdict = _decide(library, {k: v for k, v in env.items() if k != REEXEC_MARK})
    cached[key] = verdict
    try:
        from .rundir import write_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1) + "\n")
    except OSError:
        pass  # a read-only home: check again next time rather than fail
    return verdict


# ----------------------------------------------------------------------------- the interface


def _preloads_fast_blas(env: Mapping[str, str]) -> bool:
    preload = env.get("LD_PRELOAD", "")
    return any(name.split(".so")[0] in preload for name in FAST_LIBRARIES)


def fast_blas_env(env: Mapping[str, str]) -> dict:
    """``env`` plus what makes MLX use the machine's fast BLAS in a child started with it."""
    env = dict(env)
    if not sys.platform.startswith("linux") or env.get(CHOICE_VARIABLE) == "reference":
        return env
    if _preloads_fast_blas(env):
        return env  # the user's own choice, or this process's own environment passed on
    library = find_fast_blas()
    if library is None:
        return env
    verdict = _verdict(library, env)
    if verdict.get("library") != library:
        return env
    env = _with_library(env, library)
    if verdict.get("coretype") and not any(env.get(v) for v in USER_SETTINGS):
        env["OPENBLAS_CORETYPE"] = verdict["coretype"]
    return env


def install_command() -> str:
    """The command that installs OpenBLAS on this distribution."""
    ids: list[str] = []
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("ID", "ID_LIKE"):
                ids += value.strip().strip('"').split()
    except OSError:
        pass
    commands = (
        (("debian", "ubuntu"), "sudo apt-get install libopenblas0-pthread"),
        (("fedora", "rhel", "centos"), "sudo dnf install openblas-threads"),
        (("arch",), "sudo pacman -S openblas"),
        (("opensuse", "suse"), "sudo zypper install libopenblas_pthreads0"),
        (("alpine",), "sudo apk add openblas"),
    )
    for families, command in commands:
        if any(i in families for i in ids):
            return command
    return "install your distribution's OpenBLAS package (or pip install mkl)"


def blas_report() -> BlasReport:
    """The BLAS a process tunedeck starts gets, with its speed and any problem."""
    if not sys.platform.startswith("linux"):
        return BlasReport(library="Accelerate" if sys.platform == "darwin" else "reference",
                          core=None, gflops=None)
    env = dict(os.environ)
    if env.get(CHOICE_VARIABLE) == "reference":
        verdict = _verdict(None, env)
        return BlasReport(library="reference", core=None, gflops=verdict.get("gflops"),
                          problem=f"{CHOICE_VARIABLE}=reference keeps MLX on its slow reference "
                                  f"BLAS; fix: unset {CHOICE_VARIABLE}")
    library = find_fast_blas()
    verdict = _verdict(library, env)
    if verdict.get("library") is None:
        if verdict.get("rejected"):
            problem = (f"{verdict['rejected']} failed the matmul check, so MLX keeps its slow "
                       f"reference BLAS; fix: reinstall it ({install_command()})")
        else:
            problem = (f"MLX uses its slow reference BLAS; fix: {install_command()} "
                       "(about 10x faster training on the CPU)")
        return BlasReport(library="reference", core=None, gflops=verdict.get("gflops"),
                          reference_gflops=verdict.get("gflops"), problem=problem)
    return BlasReport(library=verdict["library"], core=verdict.get("core"),
                      gflops=verdict.get("gflops"), coretype_chosen=verdict.get("coretype"),
                      reference_gflops=verdict.get("reference_gflops"))


def notice_reference_blas_once() -> Optional[str]:
    """On the first run where only the reference BLAS exists, one line saying so and how to
    install a fast one (printed to stderr and returned); later runs stay quiet."""
    from .home import tunedeck_home

    if not sys.platform.startswith("linux") or os.environ.get(CHOICE_VARIABLE) == "reference":
        return None
    if find_fast_blas() is not None:
        return None
    mark = tunedeck_home() / NOTICE_MARK
    if mark.exists():
        return None
    line = (f"tunedeck: MLX is using its slow reference BLAS on this machine; for about 10x "
            f"faster training on the CPU: {install_command()}")
    print(line, file=sys.stderr)
    try:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(line + "\n")
    except OSError:
        pass
    return line


def _loaded_here(library: str) -> bool:
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return False
    return os.path.realpath(library) in maps or library in maps


def reexec_with_fast_blas() -> None:
    """Give this program, and every process it starts, the fast BLAS, before MLX is imported.

    The library is loaded into this process with RTLD_GLOBAL, which puts its symbols ahead of the
    reference BLAS that MLX brings along (one ``dlopen``, not a second interpreter start-up), and
    ``LD_PRELOAD`` goes into the environment for the children. Only when that load fails is the
    program executed again with the new environment, once (a mark in the environment stops a
    loop). Nothing happens off Linux, after MLX is imported, or with no fast library; then the
    first run says once how to install one.
    """
    if not sys.platform.startswith("linux") or os.environ.get(REEXEC_MARK):
        return
    if "mlx.core" in sys.modules:
        return  # too late: MLX has bound its BLAS already
    if _preloads_fast_blas(os.environ):
        return  # started with it (by tunedeck, or the user's own choice): nothing to look up
    env = fast_blas_env(os.environ)
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        notice_reference_blas_once()
        return
    library = env["LD_PRELOAD"].split(":", 1)[0]
    env[REEXEC_MARK] = library
    os.environ.update(env)  # OPENBLAS_CORETYPE before the library reads it, LD_PRELOAD for children
    if _loaded_here(library):
        return
    try:
        import ctypes

        ctypes.CDLL(library, mode=os.RTLD_GLOBAL)
        return
    except OSError:
        pass
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return  # go on with the reference BLAS rather than not at all


# ----------------------------------------------------------------------------- the child's side


def _run_check() -> dict:
    """In the child: which library and kernels MLX got, its speed, and its error vs numpy."""
    import time

    import numpy as np

    import mlx.core as mx

    mx.set_default_device(mx.cpu)
    preload = os.environ.get("LD_PRELOAD", "").split(":")[0]
    core = None
    if preload and "openblas" in preload:
        import ctypes

        try:
            lib = ctypes.CDLL(preload)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            core = lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            core = None
    elif preload and "mkl" in preload:
        core = "MKL"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((257, 300), dtype=np.float32)
    b = rng.standard_normal((300, 129), dtype=np.float32)
    got = np.array(mx.matmul(mx.array(a), mx.array(b)))
    want = a.astype(np.float64) @ b.astype(np.float64)
    error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    n = 1024
    x, y = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(x, y, x @ y)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        mx.eval(x @ y)
        best = min(best, time.perf_counter() - started)
    return {"core": core, "error": error, "gflops": round(2 * n**3 / best / 1e9, 1),
            "mapped": bool(preload) and _loaded_here(preload)}


if __name__ == "__main__":
    print(json.dumps(_run_check()))
