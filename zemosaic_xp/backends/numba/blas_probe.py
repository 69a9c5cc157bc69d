"""The BLAS probe of numba without importing scipy.linalg: ~0.1 s off a first compile.

numba's first compile (and its first cache load, unless :mod:`.cache_load` spares it)
imports ``numba.np.arraymath``, whose import asks whether a BLAS is available by importing
``scipy.linalg.cython_blas``: that runs ``scipy.linalg``'s package import (its array-API
layer, f2py, ...), a tenth to a third of a second, for kernels that call no BLAS.

:func:`import_arraymath` imports ``numba.np.arraymath`` first, with the probe answered
from the file system instead (is SciPy's ``cython_blas`` extension there?): the same
answer whenever SciPy is installed and importable, so numba's behaviour is unchanged
for any jitted code of the process (``np.dot`` and friends still find the BLAS, and
numba's own ``ensure_blas`` checks run again, unchanged, when such code compiles).
Nothing happens when ``scipy.linalg`` or ``numba.np.arraymath`` is already imported,
or when numba's internals are not the expected ones (another numba version): numba
then probes as usual.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["import_arraymath", "scipy_blas_present"]


def scipy_blas_present() -> bool:
    """Whether SciPy's ``cython_blas`` extension is installed, without importing SciPy.

    Returns
    -------
    bool
        True when ``scipy/linalg/cython_blas.*`` (an extension module) exists next to
        the ``scipy`` package that would be imported.
    """
    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        linalg = Path(location) / "linalg"
        if any(p.suffix in (".so", ".pyd") for p in linalg.glob("cython_blas.*")):
            return True
    return False


def import_arraymath() -> bool:
    """Import ``numba.np.arraymath`` with its BLAS probe read from the file system.

    Returns
    -------
    bool
        True when this call imported it that way; False when it was already
        imported, when ``scipy.linalg`` already is (the probe is then free), or when
        numba's ``ensure_blas`` is not where this expects it (numba probes as usual).
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return False
    try:
        import numba.np.linalg as numba_linalg
    except ImportError:
        return False
    real = getattr(numba_linalg, "ensure_blas", None)
    if real is None:
        return False

    def probe() -> None:
        """Stand in for numba's ``ensure_blas`` while ``numba.np.arraymath`` imports."""
        if not scipy_blas_present():
            raise ImportError("scipy 0.16+ is required for linear algebra")

    numba_linalg.ensure_blas = probe
    try:
        import numba.np.arraymath  # noqa: F401 - the import is the point: its probe runs now
    finally:
        numba_linalg.ensure_blas = real
        arraymath = sys.modules.get("numba.np.arraymath")
        if arraymath is not None and getattr(arraymath, "ensure_blas", None) is probe:
            arraymath.ensure_blas = real  # its own name for it, bound at its import
    return True
