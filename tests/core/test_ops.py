"""core/ops.py: the portable ops, their strategies, and the range helpers they serve.

The native ops of each backend are compared with these in ``tests/backends/``.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from tests.conftest import get_backend
from zemosaic_xp import StackConfig
from zemosaic_xp.core import ops as core_ops
from zemosaic_xp.core.ops import ArrayOps


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
