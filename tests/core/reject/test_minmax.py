"""``minmax``: clip extrema, a fixed number of samples from each end."""

from __future__ import annotations

from tests.conftest import host, on
from tests.core.reject.stacks import column, stack_column
from zemosaic_xp import StackConfig, stack


def test_minmax(backend):
    image, low, high, cov, _ = stack_column(backend, [5, 1, 9, 3, 7], reject="minmax")
    assert (image, low, high, cov) == (5.0, 1, 1, 3)
    # 2 low + 1 high would leave 2 < min_survivors = 3: the pixel keeps all five.
    image, low, high, cov, _ = stack_column(backend, [5, 1, 9, 3, 7], reject="minmax", minmax_low=2)
    assert (image, low, high, cov) == (5.0, 0, 0, 5)


def test_minmax_ties_drop_exactly_one_frame_each_side(backend):
    # Five equal values: frame 0 counts as the lowest, frame 4 as the highest, so
    # the kept weights are 2 + 3 + 4 on every backend.
    frames = on(backend, column([2.0] * 5))
    weights = on(backend, [1.0, 2.0, 3.0, 4.0, 5.0])
    r = stack(frames, weights=weights, config=StackConfig.plain(reject="minmax"))
    assert float(host(r.weight_sum)[0, 0]) == 9.0
    assert (int(host(r.rejected_low)[0, 0]), int(host(r.rejected_high)[0, 0])) == (1, 1)
    assert int(host(r.coverage)[0, 0]) == 3
