"""Medians of long rows by sampled pivots (``select_numpy`` with numba's ``split_row``).

The sampled selection must return the very values NumPy's selection of the whole row
returns (order statistics have one value; a zero median is left to the whole-row
selection, which alone decides its sign), whatever the order and distribution of the
row: ties, sorted rows, periodic rows whose even sample is unrepresentative, rows where
the wanted rank falls outside the pivots.
"""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest

pytest.importorskip("numba", reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")
from zemosaic_xp.backends import select_numpy  # noqa: E402 - numba is importable here
from zemosaic_xp.backends.numba.select import split_row  # noqa: E402

N_MIN = select_numpy.SAMPLED_MIN_N


def _rows(rng):
    rows = []
    for n in (N_MIN, N_MIN + 1, 40_000, 65_535, 65_536):
        rows.append(rng.normal(1000, 30, n))
        rows.append(np.round(rng.normal(0, 3, n)))  # ties, many zeros
        signed = rng.normal(0, 1, n)
        signed[: n // 2] = -0.0  # the median is a zero of either sign
        signed[n // 2: n // 2 + 100] = 0.0
        rows.append(signed)
        rows.append(np.sort(rng.exponential(5, n)))
        rows.append(np.tile([1.0, 2.0, 3.0, 4.0, 5.0, 1e6], n // 6 + 1)[:n])  # periodic
        spikes = rng.normal(0, 1, n)
        spikes[:: max(1, n // select_numpy._SAMPLE)] = 1e9  # the even sample sees only spikes
        rows.append(spikes)
        rows.append(np.full(n, 7.5))
    return [r.astype(np.float32) for r in rows]


def test_sampled_medians_are_the_whole_row_selection_bits():
    rows = _rows(np.random.default_rng(1))
    split = select_numpy.split_kernel(np.zeros((1, N_MIN), np.float32))
    assert split is not None
    calls = []

    def counting(*args):
        calls.append(args[1])
        return split(*args)

    want = select_numpy.median_of_rows((r.copy() for r in rows), np.float32, xp)
    got = select_numpy.median_of_rows((r.copy() for r in rows), np.float32, xp, split=counting)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(want, [np.median(r) for r in rows])
    assert len(calls) >= len(rows)  # the sampled path ran (and split again where the middle was large)


def test_short_rows_and_other_dtypes_keep_numpys_selection():
    assert select_numpy.split_kernel(np.zeros((2, N_MIN - 1), np.float32)) is None
    assert select_numpy.split_kernel(np.zeros((2, N_MIN), np.float64)) is None
    rng = np.random.default_rng(2)
    buf = rng.normal(size=(3, N_MIN)).astype(np.float32)
    counts = np.array([N_MIN, 5, 0])
    got = select_numpy.median_packed(buf.copy(), counts, xp)
    assert got[0] == np.median(buf[0]) and got[1] == np.median(buf[1, :5]) and np.isnan(got[2])


def test_split_row_counts_and_copies_the_middle():
    rng = np.random.default_rng(3)
    row = np.round(rng.normal(0, 4, 1000)).astype(np.float32)
    middle = np.full(1000, np.nan, np.float32)
    below, count = split_row(row, 900, np.float32(-1.0), np.float32(2.0), middle)
    head = row[:900]
    assert below == np.sum(head < -1) and count == np.sum((head >= -1) & (head <= 2))
    np.testing.assert_array_equal(middle[:count], head[(head >= -1) & (head <= 2)])  # in row order


def test_the_next_rank_above_the_last_pivot(monkeypatch):
    # Pivots that end the middle exactly at the lower middle value: the upper one is then the
    # smallest value above the high pivot, taken from the whole row.
    rng = np.random.default_rng(4)
    row = rng.permutation(np.arange(1.0, N_MIN + 1.0)).astype(np.float32)  # even count, distinct
    k = (N_MIN - 1) // 2
    ordered = np.sort(row)
    monkeypatch.setattr(select_numpy, "_pivots", lambda values, count, rank: (ordered[0], ordered[k]))
    split = select_numpy.split_kernel(row[None, :])
    scratch = np.empty((2, N_MIN), np.float32)
    assert select_numpy._sampled_pair(row.copy(), N_MIN, split, scratch) == (ordered[k], ordered[k + 1])
