"""Rows ready for the rejections: NaN → ``+inf`` with valid counts, sorting networks.

NumPy's SIMD sort along the contiguous axis is the fastest sort of long rows; these
kernels prepare its input in one pass, and sort short rows (N ≤ 48) themselves with
a sorting network, :data:`NETWORK_LANES` rows at a time with vector min/max, where
NumPy's per-row cost dominates (docs/performance.md, "Kernel measurements").
"""

from __future__ import annotations

import numpy as np

from .common import jit
from .constants import NETWORK_LANES, merge_network
from .simd import compare_exchange_32

__all__ = ["NETWORK_LANES", "nan_to_inf_rows", "merge_network", "network", "network_f32", "sort_network_rows"]


@jit
def nan_to_inf_rows(x, s, n_valid):
    """Copy ``x`` into ``s`` with NaN as ``+inf``, and count each row's valid (non-NaN) samples.

    Parameters
    ----------
    x : ndarray, shape (R, N), float32, C-contiguous
        Samples, NaN where invalid.
    s : ndarray, shape (R, N), float32
        Output; sorted afterwards by NumPy in place.
    n_valid : ndarray, shape (R,), int64
        Output: the valid samples of each row.

    Notes
    -----
    One pass instead of NumPy's ``isnan`` + ``where`` + a count of the NaN rows.
    """
    inf = np.float32(np.inf)
    for r in range(x.shape[0]):
        xr = x[r]
        sr = s[r]
        count = 0
        for k in range(x.shape[1]):
            v = xr[k]
            valid = v == v
            sr[k] = v if valid else inf
            count += valid
        n_valid[r] = count


@jit
def network(block, pairs):
    """Apply the compare-exchanges ``pairs`` to the rows of ``block``, lane-wise.

    Parameters
    ----------
    block : ndarray, shape (N, NETWORK_LANES), float32 or int64
        Sorted in place along axis 0. Float rows hold no NaN (invalid samples are
        ``+inf``), so the selects below are exact min / max; over a row of
        :data:`NETWORK_LANES` they compile to vector instructions.
    pairs : ndarray, shape (P, 2), int64
        :func:`merge_network` of N.

    See Also
    --------
    network_f32 : The same for float32 blocks, with explicit vector compare-exchanges.
    """
    # np.minimum(v, u) / np.maximum(u, v): ``u if u < v else v`` / ``v if u < v else u``
    # for every value but NaN (none here), signed zeros included (on a tie each returns
    # its first argument). Written as selects, the loop's stores became masked stores
    # of the changed lanes (`vmaskmovps`), which AMD's cores run microcoded: 3× slower
    # (docs/performance.md, "Stop 30").
    for t in range(pairs.shape[0]):
        a = block[pairs[t, 0]]
        b = block[pairs[t, 1]]
        for lane in range(NETWORK_LANES):
            u = a[lane]
            v = b[lane]
            a[lane] = np.minimum(v, u)
            b[lane] = np.maximum(u, v)


@jit
def network_f32(block, pairs):
    """:func:`network` of a float32 block (C order, no NaN), one vector compare-exchange a pair.

    Parameters
    ----------
    block : ndarray, shape (N, NETWORK_LANES), float32, C-contiguous
        Sorted in place along axis 0; no NaN (invalid samples are ``+inf``).
    pairs : ndarray, shape (P, 2), int64
        :func:`merge_network` of N.

    Notes
    -----
    The same bits as :func:`network`: :func:`~.simd.compare_exchange_32` selects as
    ``np.minimum`` / ``np.maximum`` do for non-NaN values, without their NaN checks
    (numba's keep three compares and three blends a vector): a 48 × 2048² WSC process's
    gather went from 27 to 21 % of its samples (docs/performance.md, "Stop 36").
    """
    if block.shape[1] != NETWORK_LANES:
        raise ValueError("network_f32: the block must have NETWORK_LANES columns")
    for t in range(pairs.shape[0]):
        compare_exchange_32(block, pairs[t, 0], pairs[t, 1])


@jit
def sort_network_rows(x, pairs, s, n_valid):
    """:func:`nan_to_inf_rows` and an ascending sort of each row, by a sorting network.

    Parameters
    ----------
    x : ndarray, shape (R, N), float32, C-contiguous
        Samples, NaN where invalid.
    pairs : ndarray, shape (P, 2), int64
        :func:`merge_network` of N.
    s : ndarray, shape (R, N), float32
        Output: rows sorted ascending, NaN last as ``+inf`` (what NumPy's sort of the
        ``+inf`` copy gives).
    n_valid : ndarray, shape (R,), int64
        Output.
    """
    rows, n = x.shape
    inf = np.float32(np.inf)
    block = np.empty((n, NETWORK_LANES), np.float32)
    for r0 in range(0, rows, NETWORK_LANES):
        m = min(NETWORK_LANES, rows - r0)
        for lane in range(m):
            xr = x[r0 + lane]
            count = 0
            for k in range(n):
                v = xr[k]
                valid = v == v
                block[k, lane] = v if valid else inf
                count += valid
            n_valid[r0 + lane] = count
        for lane in range(m, NETWORK_LANES):
            for k in range(n):
                block[k, lane] = inf
        network_f32(block, pairs)
        for lane in range(m):
            sr = s[r0 + lane]
            for k in range(n):
                sr[k] = block[k, lane]
