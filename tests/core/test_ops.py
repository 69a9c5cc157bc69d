"""core/ops.py: the portable ops, their strategies, and the range helpers they serve.

The native ops of each backend are compared with these in ``tests/backends/``.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

from tests.conftest import get_backend, host, on
from zemosaic_xp import StackConfig
from zemosaic_xp.core import ops as core_ops
from zemosaic_xp.core.ops import ArrayOps, ops_for


def _dense(xp):
    """The GPU strategy (no compaction, no convergence test) with portable primitives."""
    ops = ArrayOps(xp)
    ops.compact, ops.check_every = False, 0
    return ops


def _outliers(seed, shape):
    # Outliers at several levels force several clipping iterations; NaN holes, empty pixels.
    rng = np.random.default_rng(seed)
    data = rng.normal(1000, 10, shape).astype(np.float32)
    for level in (30, 60, 150, 500):
        data[rng.random(shape) < 0.04] += level
    data[rng.random(shape) < 0.05] = np.nan
    data[:, 0, 0] = np.nan
    return data


def test_range_mean_equals_masked_mean():
    # The unweighted mean from kept sums equals Σx/n over the keep mask.
    from zemosaic_xp.core.combine import combine
    from zemosaic_xp.core.reject import reject
    from zemosaic_xp.core.samples import Samples

    xp = get_backend("numpy").xp
    data = _outliers(11, (30, 12, 10))
    rows = np.moveaxis(data, 0, -1).reshape(-1, 30)
    config = StackConfig.plain(reject="kappa_sigma")
    samples = Samples(rows, None, xp=xp)
    rej = reject(samples, config)
    fast, _, coverage = combine(samples, rej, config)
    rej.kept_sum = None
    slow, _, coverage_slow = combine(samples, rej, config)
    np.testing.assert_array_equal(coverage, coverage_slow)
    np.testing.assert_allclose(fast, slow, rtol=2e-7, equal_nan=True)


def test_core_never_imports_array_libraries():
    core = pathlib.Path(core_ops.__file__).parent
    pattern = re.compile(r"^\s*(import|from)\s+(numpy|cupy|torch|numba)\b", re.MULTILINE)
    offenders = [str(p.relative_to(core)) for p in core.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("inclusive", [False, True])
def test_range_searches_match_searchsorted(backend, inclusive):
    # search_rows (binary search) and search_near (guess first) on a sub-range [lo, hi).
    from zemosaic_xp.core.ranges import search_near, search_rows

    xp = backend.xp
    rng = np.random.default_rng(4)
    rows = np.sort(rng.integers(0, 12, (60, 17)).astype(np.float32), axis=1)
    t = rng.uniform(-1, 13, 60)
    lo = rng.integers(0, 9, 60)
    hi = np.maximum(lo, rng.integers(8, 18, 60))
    side = "right" if inclusive else "left"
    want = [min(max(np.searchsorted(rows[i], t[i], side=side), lo[i]), hi[i]) for i in range(60)]
    args = (on(backend, rows), xp.astype(on(backend, t), xp.float64),
            xp.astype(on(backend, lo), xp.int64), xp.astype(on(backend, hi), xp.int64))
    np.testing.assert_array_equal(host(search_rows(*args, inclusive=inclusive, xp=xp)), want)
    for ops in (ops_for(xp, backend.device), _dense(xp)):
        for guess in (np.array(want), rng.integers(0, 18, 60)):  # right and wrong guesses
            got = search_near(*args, xp.astype(on(backend, guess), xp.int64), inclusive=inclusive,
                              xp=xp, ops=ops)
            np.testing.assert_array_equal(host(got), want)


def test_range_sum_from_prefix_sums(backend):
    from zemosaic_xp.core.ranges import range_sum

    xp = backend.xp
    d = np.random.default_rng(6).normal(size=(30, 9))
    lo = np.arange(30) % 10
    hi = np.minimum(lo + np.arange(30) % 4, 9)
    got = range_sum(xp.cumulative_sum(on(backend, d), axis=-1), xp.astype(on(backend, lo), xp.int64),
                    xp.astype(on(backend, hi), xp.int64), xp=xp)
    want = [d[i, lo[i]:hi[i]].sum() for i in range(30)]
    np.testing.assert_allclose(host(got), want, rtol=1e-5, atol=1e-5)
