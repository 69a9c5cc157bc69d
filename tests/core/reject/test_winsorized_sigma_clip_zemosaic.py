"""``winsorized_sigma_clip`` with ``wsc_impl="zemosaic"`` (ZeMosaic's Huber variant): the
sort-once range path equals the direct formulation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import host, on
from zemosaic_xp import StackConfig
from zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic import _reject_wsc_zemosaic, _wsc_weighted
from zemosaic_xp.core.samples import Samples


@pytest.mark.parametrize("n_frames", [2, 5, 32])
@pytest.mark.parametrize(("sky", "noise"), [(100.0, 5.0), (0.0, 1.0), (3e4, 3.0)])
def test_range_path_equals_direct_path(backend, n_frames, sky, noise):
    # Unit weights send the same samples down the direct formulation (every sample,
    # original order, float64): the keep masks and iteration counts must be identical,
    # including a 30 000 ADU pedestal with σ = 3 and data centred on zero.
    rng = np.random.default_rng(n_frames)
    x = rng.normal(sky, noise, (1500, n_frames)).astype(np.float32)
    x[rng.random(x.shape) < 0.01] += 60 * noise
    x[rng.random(x.shape) < 0.02] -= 20 * noise
    x[rng.random(x.shape) < 0.05] = np.nan
    x[0] = np.nan
    config = StackConfig.plain(reject="winsorized_sigma_clip", wsc_impl="zemosaic")
    xp = backend.xp
    data = on(backend, x)
    fast = _reject_wsc_zemosaic(Samples(data, None, xp=xp), config)
    direct = _wsc_weighted(Samples(data, xp.ones_like(data), xp=xp), config)
    np.testing.assert_array_equal(host(fast.keep), host(direct.keep))
    np.testing.assert_array_equal(host(fast.iterations), host(direct.iterations))
    np.testing.assert_array_equal(host(fast.n_low), host(direct.n_low))
    np.testing.assert_array_equal(host(fast.n_high), host(direct.n_high))

