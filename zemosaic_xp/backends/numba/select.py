"""One pass of a sampled selection: what lies below, between and above two pivots.

:func:`split_row` serves the medians of long rows (``backends/select_numpy.py``): with
two pivots taken from a sample of the row on either side of the wanted rank, one pass
counts the values below the low pivot and copies those between the pivots (a few percent
of the row); NumPy's selection then runs on the copy only, instead of the whole row.
"""

from __future__ import annotations

from .common import jit

__all__ = ["split_row"]


@jit
def split_row(row, n, low, high, middle):
    """Split ``row[:n]`` about the pivots ``low <= high``.

    Parameters
    ----------
    row : ndarray, shape (>= n,), float32
        The values (no NaN among the first ``n``); read only.
    n : int
        How many values.
    low, high : float32
        The pivots.
    middle : ndarray, shape (>= n,), float32
        Output: the values ``low <= x <= high`` first, in row order.

    Returns
    -------
    below : int
        ``#{x < low}``.
    count : int
        ``#{low <= x <= high}``, the first ``count`` values of ``middle``.
    """
    below = 0
    for j in range(n):  # vectorised
        below += row[j] < low
    count = 0
    for j in range(n):
        x = row[j]
        # Branch-free copy: every value is written at `count`, which advances past it
        # only when it lies between the pivots (a branch mispredicts on a few % of them).
        middle[count] = x
        count += (x >= low) & (x <= high)
    return below, count
