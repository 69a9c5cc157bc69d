"""``winsorized_quantile``: ZeMosaic's legacy quantile winsorisation + sigma clip."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.reject import oracles as ref
from tests.core.reject.stacks import random_stack, stack_column
from zemosaic_xp import StackConfig, stack


def test_winsorized_quantile_and_its_small_n_weakness(backend):
    # Upstream hazard (upstream_spec §2.6.2): N = 8, one 5e4 hit on a 1000 ADU sky.
    # Winsorising at 5 %/95 % interpolates: q95 = 1000 + 0.65·49000 = 32850. The inner
    # 3σ clip drops 32850 (std 10533), so m = 1000, σ = 0 and the hit is rejected.
    values = [1000.0] * 7 + [5e4]
    image, low, high, cov, _ = stack_column(backend, values, reject="winsorized_quantile")
    assert (image, low, high, cov) == (1000.0, 0, 1, 7)
    # Re-winsorising (ZeMosaic's default) puts it back at 32850: (7·1000 + 32850)/8.
    image, low, high, cov, _ = stack_column(backend, values, reject="winsorized_quantile",
                                            winsor_rewinsor=True)
    assert image == pytest.approx(4981.25)
    assert (low, high, cov) == (0, 1, 8)


@pytest.mark.filterwarnings("ignore:Input data contains invalid values")
def test_winsorized_quantile_rewinsor_matches_oracle():
    data = random_stack(5, nan_fraction=0.0)
    result = stack(data, config=StackConfig.plain(reject="winsorized_quantile", winsor_rewinsor=True))
    for y in range(data.shape[1]):
        for x in range(data.shape[2]):
            v = data[:, y, x]
            keep, n_low, n_high, q = ref.winsorized_quantile_pixel(v)
            valid = np.isfinite(v)
            refill = np.where(keep | ~valid, v, np.clip(v, *q) if q else v)
            expected = refill[valid].astype(np.float64).mean() if valid.any() else np.nan
            np.testing.assert_allclose(result.image[y, x], expected, rtol=1e-5, err_msg=f"{(y, x)}")
            assert result.coverage[y, x] == valid.sum()
            assert (result.rejected_low[y, x], result.rejected_high[y, x]) == (n_low, n_high)
