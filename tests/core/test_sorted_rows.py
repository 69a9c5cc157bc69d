"""The sort-once toolkit (core/sorted_rows.py) against NumPy's own sort-based answers.

Known answers first, then each helper against ``np.searchsorted``, ``np.median`` or a
direct sum over the same sub-range, on every backend.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_on, data_dependent_shapes_allowed, host, on
from zemosaic_xp.core.nanstats import sort_valid
from zemosaic_xp.core.ops import ArrayOps, ops_for
from zemosaic_xp.core.sorted_rows import (
    anchored_sums,
    centred_prefix_sums,
    mad_sorted,
    range_sum,
    search_near,
    search_rows,
    take_rows,
)


def _int64(backend, values):
    xp = backend.xp
    return xp.astype(on(backend, values), xp.int64)


# ---------------------------------------------------------------------------- known answers
def test_take_rows_known_answer(backend):
    xp = backend.xp
    s = on(backend, [[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])
    got = take_rows(s, _int64(backend, [2, 0]), xp=xp)
    assert_on(got, backend)
    np.testing.assert_array_equal(host(got), [12.0, 20.0])
    # A subset of the rows, and positions past either end clamped (clip=True).
    subset = take_rows(s, _int64(backend, [1]), xp=xp, rows=_int64(backend, [1]))
    np.testing.assert_array_equal(host(subset), [21.0])
    clipped = take_rows(s, _int64(backend, [-1, 3]), xp=xp, clip=True)
    np.testing.assert_array_equal(host(clipped), [10.0, 22.0])
    # Leading dimensions: one column of every row of a (2, 2, 3) array.
    cube = on(backend, np.arange(12.0).reshape(2, 2, 3))
    np.testing.assert_array_equal(host(take_rows(cube, _int64(backend, [[0, 1], [2, 0]]), xp=xp)),
                                  [[0.0, 4.0], [8.0, 9.0]])


def test_mad_known_answer(backend):
    # 10 11 12 13 14 100 around 12.5: deviations 0.5 0.5 1.5 1.5 2.5 87.5 -> MAD 1.5;
    # the range [1, 4) = 11 12 13 around 12: deviations 0 1 1 -> MAD 1.
    xp = backend.xp
    s = on(backend, [[10.0, 11.0, 12.0, 13.0, 14.0, 100.0]])
    whole = mad_sorted(s, _int64(backend, [6]), on(backend, [12.5]), xp=xp)
    np.testing.assert_array_equal(host(whole), [1.5])
    got = mad_sorted(s, _int64(backend, [3]), on(backend, [12.0]), xp=xp, lo=_int64(backend, [1]))
    np.testing.assert_array_equal(host(got), [1.0])


# ---------------------------------------------------------------------------- binary searches
def test_search_rows_matches_searchsorted(backend):
    rng = np.random.default_rng(3)
    rows = np.sort(rng.integers(0, 20, (50, 33)).astype(np.float32), axis=1)
    thresholds = rng.uniform(-1, 21, (50, 1)).astype(np.float32)
    s = on(backend, rows)
    t = on(backend, thresholds[:, 0])
    xp = backend.xp
    lo = _int64(backend, np.zeros(50))
    hi = _int64(backend, np.full(50, 33))
    left = host(search_rows(s, t, lo, hi, xp=xp))
    right = host(search_rows(s, t, lo, hi, inclusive=True, xp=xp))
    for i in range(50):
        assert left[i] == np.searchsorted(rows[i], thresholds[i, 0], side="left")
        assert right[i] == np.searchsorted(rows[i], thresholds[i, 0], side="right")


@pytest.mark.parametrize("inclusive", [False, True])
def test_range_searches_match_searchsorted(backend, inclusive):
    # search_rows (binary search) and search_near (guess first) on a sub-range [lo, hi),
    # with both strategies of search_near: compact (CPU) and every row (GPU).
    xp = backend.xp
    rng = np.random.default_rng(4)
    rows = np.sort(rng.integers(0, 12, (60, 17)).astype(np.float32), axis=1)
    t = rng.uniform(-1, 13, 60)
    lo = rng.integers(0, 9, 60)
    hi = np.maximum(lo, rng.integers(8, 18, 60))
    side = "right" if inclusive else "left"
    want = [min(max(np.searchsorted(rows[i], t[i], side=side), lo[i]), hi[i]) for i in range(60)]
    args = (on(backend, rows), xp.astype(on(backend, t), xp.float64), _int64(backend, lo),
            _int64(backend, hi))
    np.testing.assert_array_equal(host(search_rows(*args, inclusive=inclusive, xp=xp)), want)
    compact, dense, counting = ArrayOps(xp), ArrayOps(xp), ArrayOps(xp)
    compact.compact, dense.compact = True, False
    counting.count_search = True  # the GPU strategy: one count over the rows
    np.testing.assert_array_equal(host(search_rows(*args, inclusive=inclusive, xp=xp, by_count=True)), want)
    strategies = [ops_for(xp, backend.device), dense, counting]
    if data_dependent_shapes_allowed(backend):
        strategies.append(compact)  # compaction gathers rows with nonzero(): data-dependent
    for ops in strategies:
        for guess in (np.array(want), rng.integers(0, 18, 60)):  # right and wrong guesses
            got = search_near(*args, _int64(backend, guess), inclusive=inclusive, xp=xp, ops=ops)
            np.testing.assert_array_equal(host(got), want)


@pytest.mark.parametrize("inclusive", [False, True])
def test_search_by_count_equals_binary_search_at_the_edges(backend, inclusive):
    # Counting over whole rows (GPUs) must give the binary search's index: rows with
    # invalid +inf tails and ties, float64 thresholds a hair off a float32 sample (compared
    # exactly, not rounded to float32), NaN and infinite thresholds, empty ranges.
    xp = backend.xp
    rng = np.random.default_rng(11)
    rows = np.sort(rng.integers(0, 6, (48, 9)).astype(np.float32), axis=1)
    n_valid = rng.integers(0, 10, 48)
    rows[np.arange(9)[None, :] >= n_valid[:, None]] = np.inf
    x = rows[np.arange(48), rng.integers(0, 9, 48)].astype(np.float64)
    t = np.where(np.isfinite(x), x, 3.0) + rng.choice([-1e-12, 0.0, 1e-12], 48)
    t[:4] = [np.nan, np.inf, -np.inf, 2.5]
    lo = rng.integers(0, 5, 48)
    hi = np.maximum(lo, np.minimum(n_valid, rng.integers(3, 10, 48)))
    hi[4:8] = lo[4:8]  # empty ranges
    thresholds = xp.asarray(t, dtype=xp.float64, device=backend.device)
    args = (on(backend, rows), thresholds, _int64(backend, lo), _int64(backend, hi))
    binary = host(search_rows(*args, inclusive=inclusive, xp=xp))
    counted = host(search_rows(*args, inclusive=inclusive, xp=xp, by_count=True))
    np.testing.assert_array_equal(counted, binary)
    side = "right" if inclusive else "left"
    want = [lo[i] if np.isnan(t[i]) else min(max(np.searchsorted(rows[i], t[i], side=side), lo[i]), hi[i])
            for i in range(48)]
    np.testing.assert_array_equal(binary, want)


# ---------------------------------------------------------------------------- range sums
def test_range_sum_from_prefix_sums(backend):
    xp = backend.xp
    d = np.random.default_rng(6).normal(size=(30, 9))
    lo = np.arange(30) % 10
    hi = np.minimum(lo + np.arange(30) % 4, 9)
    prefix = xp.cumulative_sum(on(backend, d), axis=-1, include_initial=True)
    got = range_sum(prefix, _int64(backend, lo), _int64(backend, hi), xp=xp)
    want = [d[i, lo[i]:hi[i]].sum() for i in range(30)]
    np.testing.assert_allclose(host(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sums", [centred_prefix_sums, anchored_sums])
def test_centred_range_sums_match_direct_sums(backend, sums):
    # Σ(x − c) and Σ(x − c)² over random sub-ranges of sorted rows with NaN (invalid last),
    # a 3e4 pedestal and a huge outlier: both sum layouts give the direct float64 sums.
    xp = backend.xp
    rng = np.random.default_rng(8)
    x = rng.normal(3e4, 3.0, (40, 11)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[5, 0] = 1e9
    s, n = sort_valid(on(backend, x), xp=xp)
    s_np, n_np = host(s), host(n)[:, 0]
    centre = np.float32(3e4) + rng.normal(0, 1, 40).astype(np.float32)
    lo = np.minimum(rng.integers(0, 4, 40), n_np)
    hi = np.maximum(lo, n_np - rng.integers(0, 4, 40))
    f1, f2 = sums(s, on(backend, centre), xp.reshape(n, (-1,)), xp=xp, ops=ArrayOps(xp))
    assert_on(f1, backend)
    got1 = host(range_sum(f1, _int64(backend, lo), _int64(backend, hi), xp=xp))
    got2 = host(range_sum(f2, _int64(backend, lo), _int64(backend, hi), xp=xp))
    for i in range(40):
        d = s_np[i, lo[i]:hi[i]].astype(np.float64) - np.float64(centre[i])
        np.testing.assert_allclose(got1[i], d.sum(), rtol=1e-9, atol=1e-6, err_msg=f"row {i}")
        np.testing.assert_allclose(got2[i], (d * d).sum(), rtol=1e-9, atol=1e-6, err_msg=f"row {i}")
    assert host(range_sum(f1, _int64(backend, lo), _int64(backend, lo), xp=xp)).tolist() == [0.0] * 40


# ---------------------------------------------------------------------------- MAD
def test_mad_of_sorted_ranges_matches_numpy(backend):
    xp = backend.xp
    rng = np.random.default_rng(7)
    rows = np.round(rng.normal(0, 3, (400, 9)), 0).astype(np.float32)  # many ties
    rows[rng.random(rows.shape) < 0.2] = np.nan
    s, n = sort_valid(on(backend, rows), xp=xp)
    s_np, n_np = host(s), host(n)[:, 0]
    lo = np.minimum(rng.integers(0, 3, 400), n_np)
    hi = np.maximum(lo, n_np - rng.integers(0, 3, 400))
    centre = rng.normal(0, 2, 400).astype(np.float32)
    got = host(mad_sorted(s, _int64(backend, hi - lo), on(backend, centre), xp=xp, lo=_int64(backend, lo)))
    for i in range(400):
        part = s_np[i, lo[i]:hi[i]]
        expected = np.median(np.abs(part - centre[i])) if part.size else np.nan
        np.testing.assert_allclose(got[i], expected, rtol=1e-6, err_msg=f"row {i}")
