"""The paired fit's rounds through the numba kernels (backends/pairfit_numpy.py) against the core.

``paired_fit`` on the NumPy ops with numba must give the portable core's gains, offsets
and flags to the bit: frames with stars, saturation, a trail, holes, gradients (the raw
and the differenced rounds both chosen), any row chunking; the kernels' pieces (the
pairwise sums, the packed medians) against NumPy on their own.
"""

from __future__ import annotations

import array_api_compat.numpy as np_xp
import numpy as np
import pytest

from tests.core.test_linear_fit_norm import _field
from zemosaic_xp.backends.ops_numpy import NumpyOps
from zemosaic_xp.backends.select_numpy import median_packed
from zemosaic_xp.core import pairfit
from zemosaic_xp.core.ops import portable_only
from zemosaic_xp.core.pairfit import paired_fit

pytestmark = pytest.mark.usefixtures("kernels_on")
kernels = pytest.importorskip("zemosaic_xp.backends.numba.kernels",
                              reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")


def _rows(seed, *, n=6, size=96, gradients=None, holes=False, trail=False, stars=True):
    frames, _, _ = _field(size, n, seed=seed, gains=np.linspace(0.9, 1.12, n), offsets=np.linspace(-40, 60, n),
                          gradients=gradients, stars=stars)
    if holes:
        frames[1, 10:40, 20:50] = np.nan
    if trail:
        frames[2, np.arange(size), np.arange(size)] += 3000.0
    x = frames.reshape(n, -1)
    ref = np.broadcast_to(x[0], x.shape).copy()
    return np.ascontiguousarray(x), ref


def _both(x, ref, **kw):
    g0, o0 = np.linspace(0.95, 1.05, x.shape[0]), np.zeros(x.shape[0])
    with portable_only():
        expected = paired_fit(x, ref, g0, o0, xp=np_xp, **kw)
    calls = []
    original = NumpyOps.paired_rounds

    def spy(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(result is not None)
        return result

    NumpyOps.paired_rounds = spy
    try:
        got = paired_fit(x, ref, g0, o0, xp=np_xp, **kw)
    finally:
        NumpyOps.paired_rounds = original
    assert calls and all(calls)  # the fused rounds ran (both kinds of pairs)
    return got, expected


@pytest.mark.parametrize("case", ["stars", "holes-trail", "gradients", "no-stars"])
@pytest.mark.parametrize("rows_per_chunk", [None, 1, 4])
def test_fused_rounds_equal_the_core(case, rows_per_chunk):
    kw = {"holes": case == "holes-trail", "trail": case == "holes-trail", "stars": case != "no-stars",
          "gradients": np.linspace(0, 300, 6) if case == "gradients" else None}
    x, ref = _rows(3, **kw)
    got, expected = _both(x, ref, rows_per_chunk=rows_per_chunk)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    if case == "stars":
        assert bool(np.all(expected[2]))  # the fit was used: the comparison covers it


def test_fused_rounds_return_what_the_core_returns():
    # The rounds on their own: gain, kept mask, count and s0, raw and differenced pairs.
    x, ref = _rows(5, holes=True)
    valid = np.isfinite(x) & np.isfinite(ref)
    xv, rv = np.where(valid, x, 0).astype(np.float32), np.where(valid, ref, 0).astype(np.float32)
    mid_x = np.nanmedian(np.where(valid, x, np.nan), axis=1, keepdims=True).astype(np.float32)
    mid_r = np.nanmedian(np.where(valid, ref, np.nan), axis=1, keepdims=True).astype(np.float32)
    g = np.full((x.shape[0], 1), 0.97)
    delta = np.linspace(0.8, 1.2, x.shape[0])[:, None]
    light = (xv, rv, mid_x, mid_r)
    pair = valid[:, 1:] & valid[:, :-1]
    for args, origin in (((xv[:, 1:] - xv[:, :-1], rv[:, 1:] - rv[:, :-1], pair), True), ((xv, rv, valid), False)):
        with portable_only():
            expected = pairfit._rounds(*args, light, g, delta, origin=origin, xp=np_xp)
        got = NumpyOps(np_xp).paired_rounds(*args, light, g, delta, origin=origin, rounds=4)
        for a, b in zip(got, expected):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("m", [1, 5, 7, 8, 9, 127, 128, 129, 256, 1000, 8191, 8193, 65536, 70001])
@pytest.mark.parametrize("origin", [False, True])
def test_deming_sums_are_numpy_pairwise_sums(m, origin):
    rng = np.random.default_rng(m)
    x = (rng.standard_normal((2, m)) * 300 + 1000).astype(np.float32)
    r = (x * 1.1 + rng.standard_normal((2, m))).astype(np.float32)
    w = rng.uniform(0, 2, (2, m)).astype(np.float32)
    w[:, ::7] = 0
    out = np.empty((2, 4))
    kernels.deming_sums(x, r, w, origin, out)

    def total(a):
        return np.sum(a.astype(np.float64), axis=-1)

    big_w = total(w)
    safe = np.where(big_w > 0, big_w, 1.0)
    xc, rc = x, r
    if not origin:
        xc = x - (total(w * x) / safe).astype(np.float32)[:, None]
        rc = r - (total(w * r) / safe).astype(np.float32)[:, None]
    np.testing.assert_array_equal(out[:, 0], big_w)
    np.testing.assert_array_equal(out[:, 1], total(w * xc * xc) / safe)
    np.testing.assert_array_equal(out[:, 2], total(w * rc * rc) / safe)
    np.testing.assert_array_equal(out[:, 3], total(w * xc * rc) / safe)


@pytest.mark.parametrize("m", [0, 1, 2, 3, 1024, 4097])
def test_packed_medians_equal_median_valid(m):
    rng = np.random.default_rng(m + 1)
    ops = NumpyOps(np_xp)
    values = rng.standard_normal((3, max(m, 1))).astype(np.float32)
    counts = np.array([m, m // 2, 0])
    rows = np.full((3, max(m, 1)), np.nan, np.float32)
    for i, c in enumerate(counts):
        rows[i, :c] = values[i, :c]
    buf = values.copy()
    got = median_packed(buf, counts, np_xp)
    expected = ops.median_valid(rows)
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[2])


def test_threads_do_not_change_the_fit(monkeypatch):
    # Row chunks are fitted on ops.band_workers threads: the same fit with 1 and 3.
    from array_api_compat import device

    from zemosaic_xp.core.ops import ops_for

    x, ref = _rows(9, n=7, holes=True)
    g0, o0 = np.linspace(0.95, 1.05, 7), np.zeros(7)
    ops = ops_for(np_xp, device(x))
    results = []
    for workers in (1, 3):
        monkeypatch.setattr(ops, "band_workers", workers)
        results.append(paired_fit(x, ref, g0, o0, xp=np_xp, rows_per_chunk=2))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
