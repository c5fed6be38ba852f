"""`tunedeck doctor`: backend, BLAS, memory, versions and home, and one line per problem."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

from tunedeck.core import blas


def test_doctor_names_the_backend_the_blas_the_versions_and_the_home(tunedeck, isolated_home):
    code, out, err = tunedeck("doctor")
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["backend"].split()[1] in ("CPU", "Metal", "CUDA")
    library = blas.find_fast_blas()
    if sys.platform.startswith("linux"):
        # The BLAS MLX gets in a process tunedeck starts: the machine's fast one when it has one.
        assert (library or "reference") in lines["BLAS"] and "GFLOP/s" in lines["BLAS"]
    for name in ("mlx", "mlx-lm", "tunedeck"):
        assert f"{name} {metadata.version(name)}" in lines["versions"]
    assert str(isolated_home) in lines["home"]
    assert "GB" in lines["memory"]


def test_doctor_json(tunedeck, isolated_home):
    code, out, _ = tunedeck("doctor", "--json")
    assert code == 0
    checkup = json.loads(out)
    assert checkup["versions"]["mlx-lm"] == metadata.version("mlx-lm")
    assert checkup["home"].startswith(str(isolated_home))
    assert isinstance(checkup["problems"], list)


def test_each_problem_is_one_line_with_its_fix(tunedeck, tmp_path, monkeypatch):
    # A home that cannot be created (under a file), and MLX told to keep its reference BLAS.
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TUNEDECK_HOME", str(tmp_path / "a-file" / "home"))
    monkeypatch.setenv(blas.CHOICE_VARIABLE, "reference")
    code, out, _ = tunedeck("doctor")
    assert code == 0
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert any("not writable" in p and "TUNEDECK_HOME" in p for p in problems)
    assert any("reference" in p and f"unset {blas.CHOICE_VARIABLE}" in p for p in problems)
    assert all("; fix: " in p for p in problems)


def test_doctor_imports_neither_mlx_lm_nor_textual():
    code = ("import sys; from tunedeck.core.cli import main; main(['doctor']); "
            "print(sorted(m for m in ('mlx_lm', 'textual', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
