"""The fast BLAS under MLX: found by name, checked against numpy, cached, and loaded before MLX."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tunedeck.core import blas

needs_fast_blas = pytest.mark.skipif(blas.find_fast_blas() is None,
                                     reason="no optimized BLAS on this machine (the suite still "
                                            "runs on MLX's reference BLAS)")

# What a training step multiplies: a projection, its gradient, and an attention-like softmax.
_PRODUCTS = """
import json, os, sys
import numpy as np
import mlx.core as mx
rng = np.random.default_rng(7)
x = mx.array(rng.standard_normal((64, 96), dtype=np.float32))
w = mx.array(rng.standard_normal((96, 80), dtype=np.float32))
loss = lambda w: mx.softmax(x @ w, axis=-1).sum(axis=0) @ mx.arange(80, dtype=mx.float32)
value, grad = mx.value_and_grad(loss)(w)
out = {"y": np.array(x @ w).tolist(), "grad": np.array(grad).tolist(), "value": value.item()}
maps = open("/proc/self/maps").read()
out["mapped"] = [lib for lib in sys.argv[1:] if os.path.realpath(lib) in maps]
print(json.dumps(out))
"""


def _products(env: dict, library: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PRODUCTS, library], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def _plain_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", blas.REEXEC_MARK)}


@needs_fast_blas
def test_mlx_results_with_the_fast_blas_equal_the_reference_ones():
    import numpy as np

    library = blas.find_fast_blas()
    fast_env = blas.fast_blas_env(_plain_env())
    assert fast_env["LD_PRELOAD"].split(":")[0] == library
    fast = _products(fast_env, library)
    reference = _products(_plain_env(), library)
    assert fast["mapped"] == [library] and reference["mapped"] == []
    np.testing.assert_allclose(fast["y"], reference["y"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fast["grad"], reference["grad"], rtol=1e-4, atol=1e-3)
    assert fast["value"] == pytest.approx(reference["value"], rel=1e-5)


@needs_fast_blas
def test_the_console_script_start_gives_mlx_and_its_children_the_fast_blas():
    library = blas.find_fast_blas()
    # What tunedeck's main() does first, then MLX in the same process and in a child.
    child = ("import os, sys, mlx.core as mx; mx.eval(mx.ones((4, 4)) @ mx.ones((4, 4))); "
             "print(os.path.realpath(sys.argv[1]) in open('/proc/self/maps').read())")
    code = ("from tunedeck.core.blas import reexec_with_fast_blas; reexec_with_fast_blas()\n"
            + _PRODUCTS.replace("print(json.dumps(out))", "")
            + "import subprocess\n"
            + f"child = subprocess.run([sys.executable, '-c', {child!r}, sys.argv[1]], "
              "capture_output=True, text=True, check=True).stdout.strip()\n"
            + "print(json.dumps({'here': out['mapped'], 'child': child}))\n")
    done = subprocess.run([sys.executable, "-c", code, library], env=_plain_env(),
                          capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"here": [library], "child": "True"}
    assert "reference BLAS" not in done.stderr


@needs_fast_blas
def test_the_check_runs_once_per_library_and_cpu(isolated_home, monkeypatch):
    env = _plain_env()
    first = blas.fast_blas_env(env)
    cache = json.loads((isolated_home / blas.CACHE_NAME).read_text())
    assert len(cache) == 1

    def no_second_check(env):
        raise AssertionError("the BLAS check ran again")

    monkeypatch.setattr(blas, "_check", no_second_check)
    assert blas.fast_blas_env(env) == first
    assert blas.blas_report().library == blas.find_fast_blas()


@needs_fast_blas
def test_a_users_own_openblas_settings_are_kept():
    env = {**_plain_env(), "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}
    fast = blas.fast_blas_env(env)
    assert fast["OPENBLAS_CORETYPE"] == "Haswell" and fast["OPENBLAS_L2_SIZE"] == "1048576"


def test_tunedeck_blas_reference_leaves_the_environment_alone():
    env = {**_plain_env(), blas.CHOICE_VARIABLE: "reference"}
    assert blas.fast_blas_env(env) == env


def test_kernel_families_follow_the_cpu_flags():
    avx512 = frozenset({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                        "avx512cd"})
    assert blas.kernel_candidates(avx512) == ["SkylakeX", "Haswell", "SandyBridge"]
    assert blas.kernel_candidates(frozenset({"avx", "avx2", "fma"})) == ["Haswell", "SandyBridge"]
    assert blas.kernel_candidates(frozenset({"sse2"})) == []


@needs_fast_blas
@pytest.mark.skipif("avx512f" in blas._cpu_flags(), reason="this CPU runs AVX-512 kernels")
def test_a_kernel_the_cpu_cannot_run_fails_the_check():
    # SkylakeX kernels use AVX-512: on this CPU the check's child dies, and the choice falls back.
    base = blas._with_library(_plain_env(), blas.find_fast_blas())
    assert not blas._agrees(blas._check({**base, "OPENBLAS_CORETYPE": "SkylakeX"}))
    assert blas._agrees(blas._check(base))


def test_without_a_fast_blas_the_first_run_says_how_to_get_one(isolated_home, monkeypatch, capsys):
    monkeypatch.setattr(blas, "find_fast_blas", lambda: None)  # a machine without one
    monkeypatch.delenv(blas.CHOICE_VARIABLE, raising=False)
    line = blas.notice_reference_blas_once()
    err = capsys.readouterr().err
    assert err == line + "\n" and "\n" not in line
    assert "reference BLAS" in line and blas.install_command() in line
    assert blas.notice_reference_blas_once() is None
    assert capsys.readouterr().err == ""


def test_the_debian_install_command_names_the_package():
    try:
        release = open("/etc/os-release").read()
    except OSError:
        pytest.skip("no /etc/os-release")
    if "debian" not in release.lower():
        pytest.skip("not a Debian-based system")
    assert blas.install_command() == "sudo apt-get install libopenblas0-pthread"
