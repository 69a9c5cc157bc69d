"""``mad``: median-centred iterative clipping with σ = 1.4826 · MAD.

The MAD of a sorted range itself (``sorted_rows.mad_sorted``) is tested in
tests/core/test_sorted_rows.py.
"""

from __future__ import annotations

from tests.core.reject.stacks import stack_column


def test_mad(backend):
    # Pass 1: median 12.5, |x - 12.5| sorted 0.5 0.5 1.5 1.5 2.5 87.5 -> MAD 1.5,
    # σ = 2.224, bounds 12.5 ± 6.67 -> 100 goes. Pass 2: median 12, MAD 1,
    # bounds 12 ± 4.45 keep all -> converged after 2 iterations.
    image, low, high, cov, r = stack_column(backend, [10, 11, 12, 13, 14, 100], reject="mad")
    assert (image, low, high, cov) == (12.0, 0, 1, 5)
    assert r.stats["iterations"] == 2
