"""``zemosaic-xp grid`` makes the BLAS libraries it loads use one thread, unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zemosaic_xp.compute_threads import one_compute_thread

_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def test_unset_variables_become_one_and_the_users_are_kept(monkeypatch):
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    one_compute_thread()
    assert {name: os.environ[name] for name in _VARS} == {
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "4", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


# Run in a fresh process, as the command line runs: records OPENBLAS_NUM_THREADS at the
# moment NumPy starts loading (what its OpenBLAS reads), then prints it and OMP's.
_RECORDER = """import os, sys
seen = []
class _Recorder:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append(os.environ.get("OPENBLAS_NUM_THREADS"))
        return None
sys.meta_path.insert(0, _Recorder())
from zemosaic_xp.cli import main
code = main({argv!r})
print(seen[0] if seen else "not-loaded", os.environ.get("OMP_NUM_THREADS"))
sys.exit(code)
"""


def _fresh_run(argv: list[str], user: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _VARS}
    if user is not None:
        env["OPENBLAS_NUM_THREADS"] = user
    return subprocess.run([sys.executable, "-c", _RECORDER.format(argv=argv)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("user", [None, "3"], ids=["default", "user-set"])
def test_grid_command_sets_them_before_numpy_loads(tmp_path, user):
    # NumPy is not loaded yet when the grid command starts, so its OpenBLAS starts no
    # spinning threads (issue 14).
    run = _fresh_run(["--quiet", "grid", str(tmp_path / "missing"), str(tmp_path / "out"), "--workers", "1"], user)
    assert run.returncode == 2, run.stderr  # no stack_plan.csv: one line, exit code 2
    assert run.stdout.split() == [user or "1", "1"]


@pytest.mark.parametrize("user", [None, "3"], ids=["default", "user-set"])
def test_stack_command_sets_openblas_before_numpy_loads(tmp_path, user):
    # OpenBLAS only: torch's CPU backend keeps its OpenMP threads (OMP_NUM_THREADS unset).
    run = _fresh_run(["--quiet", "stack", str(tmp_path / "missing.fits"), "-o", str(tmp_path / "out.fits")], user)
    assert run.returncode == 2, run.stderr  # a missing input: one line, exit code 2
    assert run.stdout.split() == [user or "1", "None"]
