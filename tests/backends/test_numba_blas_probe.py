"""numba's BLAS probe answered from the file system (backends/numba/blas_probe.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from zemosaic_xp import StackConfig, stack
    from zemosaic_xp.backends.numba import numba_kernels
    from zemosaic_xp.backends.numba.blas_probe import scipy_blas_present
    assert numba_kernels() is not None
    frames = np.random.default_rng(0).normal(100, 1, (8, 16, 16)).astype(np.float32)
    stack(frames, config=StackConfig.plain(reject="kappa_sigma"))
    import numba, numba.np.arraymath as am, numba.np.linalg as nl
    state = {"scipy_linalg": "scipy.linalg" in sys.modules, "have_blas": am._HAVE_BLAS,
             "present": scipy_blas_present(), "restored": am.ensure_blas is nl.ensure_blas}

    @numba.njit
    def dot(a, b):
        return np.dot(a, b)

    a = np.arange(6.0).reshape(2, 3)
    state["dot"] = dot(a, a.T).tolist()
    print(json.dumps(state))
""")


def test_kernels_load_without_scipy_linalg_and_numba_still_finds_the_blas():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=600, check=True)
    state = json.loads(out.stdout.strip().splitlines()[-1])
    if not state["present"]:
        pytest.skip("SciPy's cython_blas is not installed here")
    # numba's first dispatch did not import scipy.linalg; its answer is the real one.
    assert state["scipy_linalg"] is False  # np.dot, compiled after this was read, imports it
    assert state["have_blas"] is True
    assert state["restored"] is True
    assert state["dot"] == [[5.0, 14.0], [14.0, 50.0]]


def test_scipy_blas_present_agrees_with_an_import():
    from zemosaic_xp.backends.numba.blas_probe import scipy_blas_present

    try:
        import scipy.linalg.cython_blas  # noqa: F401
        importable = True
    except ImportError:
        importable = False
    assert scipy_blas_present() is importable


def test_nothing_happens_once_arraymath_is_imported():
    import numba.np.arraymath  # noqa: F401

    from zemosaic_xp.backends.numba.blas_probe import import_arraymath

    assert import_arraymath() is False
