"""``numpy_namespace``: array-api-compat's NumPy namespace without NumPy's optional submodules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import array_api_compat
import numpy as np

from zemosaic_xp.backends import numpy_namespace


def _run(body: str) -> str:
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_is_the_namespace_array_namespace_returns():
    xp = numpy_namespace()
    assert xp is array_api_compat.array_namespace(np.ones(2))
    assert xp is sys.modules["array_api_compat.numpy"]


def test_fresh_import_skips_the_submodules_and_serves_them_on_access():
    out = _run("""
        import sys
        import numpy
        names, listing = list(numpy.__all__), dir(numpy)
        from zemosaic_xp.backends.numpy_xp import DEFERRED_SUBMODULES, numpy_namespace

        xp = numpy_namespace()
        import array_api_compat
        assert array_api_compat.array_namespace(numpy.ones(2)) is xp
        assert not any(f"numpy.{n}" in sys.modules for n in ("f2py", "testing", "polynomial", "ctypeslib"))
        # NumPy's own listings are back as they were.
        assert numpy.__all__ == names and dir(numpy) == listing
        # The namespace lists the deferred names and returns NumPy's objects on access.
        assert set(DEFERRED_SUBMODULES) <= set(dir(xp)) and set(DEFERRED_SUBMODULES) <= set(xp.__all__)
        assert xp.testing is numpy.testing and xp.f2py is numpy.f2py and xp.random is numpy.random
        assert "numpy.testing" in sys.modules
        try:
            xp.not_a_name
        except AttributeError as exc:
            assert "not_a_name" in str(exc)
        else:
            raise AssertionError("no AttributeError")
        # The array API part is untouched.
        assert xp.asarray([1, 2]).dtype == xp.int64 and xp.concat([xp.ones(1), xp.zeros(1)]).shape == (2,)
        ns = {}
        exec("from array_api_compat.numpy import *", ns)
        assert ns["ma"] is numpy.ma and ns["asarray"] is xp.asarray
        print("ok", end="")
    """)
    assert out == "ok"


def test_submodule_already_imported_is_copied_as_usual():
    out = _run("""
        import numpy, numpy.testing
        from zemosaic_xp.backends.numpy_xp import numpy_namespace

        xp = numpy_namespace()
        assert "testing" in vars(xp) and xp.testing is numpy.testing
        print("ok", end="")
    """)
    assert out == "ok"


def test_failed_import_restores_numpy_listings():
    out = _run("""
        import sys
        import numpy
        from zemosaic_xp.backends.numpy_xp import _import_without

        names, dir_hook = numpy.__all__, vars(numpy)["__dir__"]
        sys.modules["array_api_compat.numpy"] = None  # the import now raises ImportError

        try:
            _import_without(numpy, ("f2py", "testing"))
        except ImportError:
            pass
        assert numpy.__all__ is names and vars(numpy)["__dir__"] is dir_hook
        print("ok", end="")
    """)
    assert out == "ok"



def test_grid_processes_import_scipy_without_numpy_testing_and_f2py():
    # SciPy's vendored copy of the namespace is imported the same way by the grid
    # package, before scipy.ndimage / scipy.sparse: they still work.
    out = _run("""
        import sys
        import zemosaic_xp.grid.worker  # what a worker imports
        import scipy.ndimage, scipy.sparse
        from scipy._lib.array_api_compat import numpy as vendored
        import numpy

        assert not {"numpy.f2py", "numpy.testing", "unittest"} & set(sys.modules), sorted(sys.modules)
        assert scipy.ndimage.uniform_filter(numpy.ones((4, 4)), 3).sum() == 16.0
        assert vendored.testing is numpy.testing  # served on first access
        print("ok", end="")
    """)
    assert out == "ok"
