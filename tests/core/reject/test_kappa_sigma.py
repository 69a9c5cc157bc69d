"""``kappa_sigma``: median-centred iterative κ-σ clipping (astropy ``sigma_clip``)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import host, on
from tests.core.reject.oracles import kappa_sigma_pixel
from tests.core.reject.stacks import column
from zemosaic_xp import StackConfig, stack


def test_kappa_sigma_known_answer_by_hand(backend):
    # x = 0 ×9, 1, 30: median 0, population std = sqrt(mean(x²) - mean²).
    # Pass 1: mean = 31/11, E[x²] = 901/11 -> σ ≈ 8.58; 30 > 0 + 3σ = 25.7 -> rejected.
    # Pass 2: {0 ×9, 1}: σ = 0.3; 1 > 0.9 -> rejected. Pass 3: σ = 0 -> nothing new.
    config = StackConfig.plain(reject="kappa_sigma")
    result = stack(on(backend, column([0.0] * 9 + [1.0, 30.0])), config=config)
    assert float(host(result.image)[0, 0]) == 0.0
    assert int(host(result.rejected_high)[0, 0]) == 2
    assert result.stats["iterations"] == 3
    single = stack(on(backend, column([0.0] * 9 + [1.0, 30.0])), config=config.replace(max_iters=1))
    assert int(host(single.rejected_high)[0, 0]) == 1
    assert float(host(single.image)[0, 0]) == pytest.approx(0.1)


def test_min_survivors_guard(backend):
    # Three samples, one far off: one sample of three may always go (issue 17), 2 stay ...
    data = on(backend, column([10.0, 10.2, 500.0]))
    three = stack(data, config=StackConfig.plain(reject="kappa_sigma", kappa_low=1.0, kappa_high=1.0))
    assert int(host(three.coverage)[0, 0]) == 2
    assert float(host(three.image)[0, 0]) == pytest.approx(10.1)
    # ... four samples, two far off: 500 goes (median 205, σ 217), then 400 would leave 2
    # of 4 and the default guard (3) refuses ...
    data = on(backend, column([10.0, 10.2, 400.0, 500.0]))
    config = StackConfig.plain(reject="kappa_sigma", kappa_low=1.0, kappa_high=1.0)
    assert int(host(stack(data, config=config).coverage)[0, 0]) == 3
    # ... a guard of 2 lets both outliers go but never drops below 2 survivors.
    relaxed = stack(data, config=config.replace(min_survivors=2))
    assert int(host(relaxed.coverage)[0, 0]) == 2
    assert float(host(relaxed.image)[0, 0]) == pytest.approx(10.1)


def test_kappa_sigma_matches_per_pixel_oracle(backend):
    rng = np.random.default_rng(11)
    data = rng.normal(50, 4, (13, 9, 8)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] += rng.uniform(-60, 200, 1)[0]
    data[rng.random(data.shape) < 0.05] = np.nan
    config = StackConfig.plain(reject="kappa_sigma", kappa_low=2.5, kappa_high=2.0, min_survivors=3)
    result = stack(on(backend, data), config=config)
    image = host(result.image)
    for y in range(9):
        for x in range(8):
            kept, _, _ = kappa_sigma_pixel(data[:, y, x], 2.5, 2.0, 5, 0, 3)
            assert image[y, x] == pytest.approx(kept.mean(), rel=1e-5), (y, x)
            assert host(result.coverage)[y, x] == kept.size
