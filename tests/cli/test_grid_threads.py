"""``zemosaic-xp grid`` makes the BLAS libraries it loads use one thread, unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zemosaic_xp.grid.processes import one_compute_thread

_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def test_unset_variables_become_one_and_the_users_are_kept(monkeypatch):
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    one_compute_thread()
    assert {name: os.environ[name] for name in _VARS} == {
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "4", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


@pytest.mark.parametrize("user", [None, "3"], ids=["default", "user-set"])
def test_grid_command_sets_them_before_numpy_loads(tmp_path, user):
    # In a fresh process, as the command line runs: NumPy is not loaded yet when the
    # grid command starts, so its OpenBLAS starts no spinning threads (issue 14).
    script = ("import os, sys\nfrom zemosaic_xp.cli import main\n"
              f"code = main(['--quiet', 'grid', {str(tmp_path / 'missing')!r}, {str(tmp_path / 'out')!r}, "
              "'--workers', '1'])\n"
              "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])\nsys.exit(code)\n")
    env = {k: v for k, v in os.environ.items() if k not in _VARS}
    if user is not None:
        env["OPENBLAS_NUM_THREADS"] = user
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2, run.stderr  # no stack_plan.csv: one line, exit code 2
    assert run.stdout.split() == [user or "1", "1"]
