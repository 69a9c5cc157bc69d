"""The windowed clamp counts of the WSC kernel (``wsc_pixinsight.clamp_positions``).

Each inner step of the winsorised clip needs, per sorted row, how many samples lie
below its low clamp and at or below its high clamp. The kernel counts them first in a
window around the previous step's positions and over the whole row only when the
window cannot tell; the counts must equal the brute-force ones for any guess, bound
and row (ties, +inf tails, rows shorter than the window, NaN and infinite bounds).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")
from zemosaic_xp.backends.numba import wsc_pixinsight  # noqa: E402 - numba is importable here

clamp_positions = wsc_pixinsight.clamp_positions
WINDOW = wsc_pixinsight.WINDOW


def _rows(rng, n_rows, n_cols):
    # Small integers (many ties), some rows with a +inf tail (invalid samples).
    s = rng.integers(0, 12, (n_rows, n_cols)).astype(np.float32)
    s[rng.random(s.shape) < 0.1] = np.inf
    return np.sort(s, axis=1)


@pytest.mark.parametrize("n_cols", [1, WINDOW - 1, WINDOW, WINDOW + 1, 2 * WINDOW + 3, 48, 97])
def test_window_counts_equal_whole_row_counts(n_cols):
    rng = np.random.default_rng(n_cols)
    s = _rows(rng, 40, n_cols)
    bounds = [-1.0, 0.0, 0.5, 3.0, 5.5, 11.0, 12.0, np.inf, -np.inf, np.nan]
    checked = 0
    for r in range(s.shape[0]):
        for low in bounds:
            for high in bounds:
                want = (int(np.sum(s[r] < low)), int(np.sum(s[r] <= high)))
                for guess_low, guess_high in ((0, n_cols), (n_cols, 0), (n_cols // 2, n_cols // 2),
                                              tuple(rng.integers(0, n_cols + 1, 2))):
                    got = clamp_positions(s, r, np.float64(low), np.float64(high), np.int64(guess_low),
                                          np.int64(guess_high))
                    assert got == want, (r, low, high, guess_low, guess_high)
                    checked += 1
    assert checked == 40 * len(bounds) ** 2 * 4


def test_the_window_answers_when_the_positions_are_near_the_guess():
    # A bound strictly inside the window: the count is the window's, whole-row exact.
    s = np.arange(48, dtype=np.float32)[None, :]
    assert clamp_positions(s, 0, 20.5, 30.0, np.int64(20), np.int64(31)) == (21, 31)
    # Positions far from the guesses, on both sides and at both row ends.
    assert clamp_positions(s, 0, 2.5, 45.0, np.int64(40), np.int64(3)) == (3, 46)
    assert clamp_positions(s, 0, -1.0, 100.0, np.int64(24), np.int64(24)) == (0, 48)
    assert clamp_positions(s, 0, 100.0, -1.0, np.int64(0), np.int64(48)) == (48, 0)
