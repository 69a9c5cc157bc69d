"""What the band glue and the kernels share, importable without numba.

The codes the glue passes to the kernels, the empty sentinels of optional arguments and
the sorting networks' pairs: plain NumPy, so that :mod:`.band`, :mod:`.weighted_band`
and :mod:`.rejections` run on kernels compiled ahead of time (:mod:`.aot`) without
importing numba. The kernel modules import them from here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COMBINE_CODES", "UNCERTAINTY_CODES", "NO_SUMS", "NO_SCALING", "NETWORK_LANES", "FLOOR_SLACK",
           "merge_network"]

#: Code of each combine, the ``combine`` argument of the combine kernels.
COMBINE_CODES = {"mean": 0, "median": 1, "sum": 2, "min": 3, "max": 4}

#: Code of each combine that has a standard error map (0: none, the map is NaN).
UNCERTAINTY_CODES = {"mean": 1, "sum": 2, "median": 3}

#: The ``sums`` argument of the row kernels when they compute the sums themselves.
NO_SUMS = np.zeros((0, 2), np.float64)

#: The ``scaling`` argument for float32 frames (nothing to decode).
NO_SCALING = np.zeros((0, 2), np.float32)

#: Rows sorted together by the network: one compare-exchange = 2 vector operations.
NETWORK_LANES = 32

#: ``floor(f·n + FLOOR_SLACK)`` ESD steps of GESD, as the core (tests check that they agree).
FLOOR_SLACK = 1e-9


def merge_network(n: int) -> np.ndarray:
    """Build Batcher's odd-even merge sorting network of ``n`` inputs.

    Parameters
    ----------
    n : int
        Inputs; any ``n``, not only powers of two.

    Returns
    -------
    ndarray, shape (pairs, 2), int64
        Compare-exchanges ``(i, j)``, ``i < j``, in the order to apply them: 19 pairs
        for 8 inputs, 63 for 16.
    """
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)
