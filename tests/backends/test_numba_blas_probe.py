"""numba's BLAS probe answered from the file system (backends/numba/blas_probe.py).

A process whose kernels all come from the cache imports neither ``numba.np.arraymath``
nor ``scipy.linalg`` (backends/numba/cache_load.py); one that compiles a kernel gets the
probe's answer without ``scipy.linalg``, and numba still finds the BLAS afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

_CACHED = textwrap.dedent("""
    import json, sys
    import numpy as np
    from zemosaic_xp import StackConfig, stack
    from zemosaic_xp.backends.numba import numba_kernels
    from zemosaic_xp.backends.numba.common import cache_enabled
    assert numba_kernels() is not None
    frames = np.random.default_rng(0).normal(100, 1, (8, 16, 16)).astype(np.float32)
    stack(frames, config=StackConfig.plain(reject="kappa_sigma"))
    print(json.dumps({"cache": cache_enabled, "arraymath": "numba.np.arraymath" in sys.modules,
                      "scipy_linalg": "scipy.linalg" in sys.modules}))
""")

# A kernel of ours that is not in any cache yet: its first call compiles.
_KERNEL = textwrap.dedent("""
    from zemosaic_xp.backends.numba.common import jit

    @jit
    def twice(x):
        return 2 * x
""")

_COMPILES = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import fresh_kernel
    from zemosaic_xp.backends.numba.blas_probe import scipy_blas_present
    assert fresh_kernel.twice(np.float32(2)) == 4
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


def _state(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cached_kernels_import_neither_arraymath_nor_scipy_linalg():
    _state(_CACHED)  # warms the cache where it was cold
    state = _state(_CACHED)
    if not state["cache"]:
        pytest.skip("numba cannot write a cache here: every process compiles")
    from zemosaic_xp.backends.numba import cache_load

    if not cache_load.CHECKED_VERSIONS[0] <= cache_load._version() < cache_load.CHECKED_VERSIONS[1]:
        pytest.skip("another numba: its cache loads refresh the target (and import numba.np.arraymath)")
    assert state == {"cache": True, "arraymath": False, "scipy_linalg": False}


def test_a_compile_probes_without_scipy_linalg_and_numba_still_finds_the_blas(tmp_path):
    (tmp_path / "fresh_kernel.py").write_text(_KERNEL)
    state = _state(_COMPILES, str(tmp_path))
    if not state["present"]:
        pytest.skip("SciPy's cython_blas is not installed here")
    # The kernel's compile did not import scipy.linalg; its answer is the real one.
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
