"""Small stacks for the rejection tests: one pixel as a column, many pixels, random stacks."""

from __future__ import annotations

import numpy as np

from tests.conftest import assert_on, host, on
from zemosaic_xp import StackConfig, stack


def column(values):
    """One pixel's samples as a stack of N frames of 1 × 1 pixels (float32)."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


def pixels(rows):
    """(P, N) samples as a stack of N frames of P × 1 pixels."""
    rows = np.asarray(rows, dtype=np.float32)
    return np.ascontiguousarray(rows.T).reshape(rows.shape[1], rows.shape[0], 1)


def stack_column(backend, values, **config):
    """Stack one pixel with ``StackConfig.plain(**config)`` on ``backend``.

    Returns (image, rejected_low, rejected_high, coverage, result) of that pixel.
    """
    result = stack(on(backend, column(values)), config=StackConfig.plain(**config))
    assert_on(result.image, backend)
    return (float(host(result.image)[0, 0]), int(host(result.rejected_low)[0, 0]),
            int(host(result.rejected_high)[0, 0]), int(host(result.coverage)[0, 0]), result)


def random_stack(seed, n=13, shape=(7, 6), nan_fraction=0.05):
    """Gaussian frames (50 ± 4) with outliers both ways, NaN, and edge-case pixels."""
    rng = np.random.default_rng(seed)
    data = rng.normal(50, 4, (n,) + shape).astype(np.float32)
    hits = rng.random(data.shape) < 0.06
    data[hits] += rng.choice([-40.0, 90.0, 400.0], hits.sum()).astype(np.float32)
    data[rng.random(data.shape) < nan_fraction] = np.nan
    data[:, 0, 0] = np.nan          # no valid sample
    data[1:, 0, 1] = np.nan         # one valid sample
    data[2:, 0, 2] = np.nan         # two valid samples
    data[:, 0, 3] = 7.0             # all equal
    return data
