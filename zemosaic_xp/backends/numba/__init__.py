"""Numba kernels of the NumPy backend: optional, loaded only when a stack needs them.

Importing this package does not import numba. :func:`numba_kernels` imports the
kernels (and numba) at the first call that needs them; nothing is compiled before a
kernel's first use. The kernels are used when numba is installed (the optional extra
``pip install zemosaic-xp[fast]``) and the environment variable
``ZEMOSAIC_XP_NUMBA`` is not ``0`` / ``false`` / ``no`` / ``off``; the variable is
read at every call, so it takes effect in a running process.

Modules, by topic:

- :mod:`.common`: the ``jit`` / ``inline`` decorators, the constants of the
  winsorised clips and the inline row helpers (median, sums, searches, MAD) that
  every kernel shares;
- :mod:`.sorting`: NaN → ``+inf`` copies with valid counts, sorting networks;
- :mod:`.kappa_sigma`, :mod:`.wsc_pixinsight`, :mod:`.wsc_zemosaic`, :mod:`.percentile`,
  :mod:`.mad`, :mod:`.minmax`, :mod:`.gesd`, :mod:`.linear_fit_clip`,
  :mod:`.winsorized_quantile`: the rejections on sorted rows, one module per algorithm;
- :mod:`.combine`: the combine of the band path, each pixel's kept samples into the
  results;
- :mod:`.rejections`: one wrapper per rejection (sorted rows to kept ranges), shared by
  both band paths;
- :mod:`.band`: whole bands, from the frames straight into the results;
- :mod:`.weighted`, :mod:`.weighted_band`: the same for weighted stacks (quality, user,
  per-pixel and radial weights): each sample's frame carried through a stable key sort,
  the combine in frame order with the weights; bands and grid cells;
- :mod:`.constants`: the codes, sentinels and sorting networks the glue shares with the
  kernels, without numba;
- :mod:`.gather`: the band gather (frames to sorted rows with counts, medians, sums);
- :mod:`.aot`, :mod:`.aot_build`: the kernels compiled ahead of time (loaded without
  numba) and their build (``zemosaic-xp build-kernels``);
- :mod:`.kernels`: what the NumPy ops call (the band stacker, the row kernels of
  κ-σ and the WSC flavours, the sorts) in one namespace, what :func:`numba_kernels`
  returns.

The row-kernel contract (``kappa_sigma_rows``, ``wsc_pixinsight_rows``,
``wsc_rows``), checked by ``tests/backends/test_numba_kernels.py``; the kernels of the
other rejections take the same ``s`` and ``n_valid`` and give ``out_lo``, ``out_hi``,
``out_it`` (and what their module describes), checked against the portable core by
``tests/backends/test_numba_<algorithm>.py``:

- inputs ``s``, shape ``(R, N)``, float32, C-contiguous, each row sorted ascending
  with the invalid samples last as ``+inf``, and ``n_valid``, shape ``(R,)``, int64;
- outputs ``out_lo``, ``out_hi`` (the kept range ``[lo, hi)``), ``out_it`` (iterations
  or passes run), all int64, ``out_c`` (float32, each row's median, 0 for a row
  without valid samples) and ``out_sum`` (float64, ``Σ (x − median)`` over the kept
  range), each shape ``(R,)``; ``sums``, shape ``(R, 2)`` or ``(0, 2)``
  (:data:`~.common.NO_SUMS`): ``Σd``, ``Σd²`` of each whole row about the median
  already in ``out_c`` (the band gather computes both), or empty to let the kernel
  compute them;
- results equal to the portable core's on the same rows: identical ranges,
  iteration counts and float32 centres; float64 sums equal up to the order of the
  additions (exact for float32 data whose values span < 2**29 ulps, i.e. any
  astronomical frame);
- ``nogil=True`` and no ``parallel=True``: the kernels run concurrently in the band
  threads of ``stack_frames``, each on its own rows and output arrays.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

__all__ = ["NUMBA_ENV", "numba_kernels", "numba_enabled"]

#: Environment variable that switches the numba kernels off ("0", "false", "no", "off").
NUMBA_ENV = "ZEMOSAIC_XP_NUMBA"
_OFF = ("0", "false", "no", "off")

# The kernels module once imported; False once numba failed to import (not retried:
# a failed import costs as much as a successful one).
_kernels: ModuleType | bool | None = None


def _switched_off() -> bool:
    return os.environ.get(NUMBA_ENV, "").strip().lower() in _OFF


def numba_kernels() -> ModuleType | None:
    """The numba kernels (:mod:`zemosaic_xp.backends.numba.kernels`), or None.

    Returns
    -------
    module or None
        None when numba cannot be imported or ``ZEMOSAIC_XP_NUMBA`` switches the
        kernels off.

    Notes
    -----
    Where the kernels were built ahead of time for this install (:mod:`.aot`,
    ``zemosaic-xp build-kernels``) numba is not imported. Otherwise the first call
    imports numba (a fraction of a second); each kernel compiles on its first use, or
    loads from numba's on-disk cache.
    """
    global _kernels
    if _switched_off():
        return None
    if _kernels is None:
        try:
            kernels = importlib.import_module(f"{__name__}.kernels")
            if not kernels.aot.status()["compiled"]:
                importlib.import_module(f"{__name__}.common")  # numba itself: does it import?
            _kernels = kernels
        except ImportError:
            _kernels = False
    return _kernels or None


def numba_enabled() -> bool:
    """Whether :func:`numba_kernels` would return the kernels, without importing numba.

    Returns
    -------
    bool
        False when switched off by ``ZEMOSAIC_XP_NUMBA``, when numba is not installed
        or when importing it already failed.
    """
    if _switched_off():
        return False
    if _kernels is not None:
        return bool(_kernels)
    return importlib.util.find_spec("numba") is not None
