"""Portable NaN-aware statistics along an axis (default 0, the frame axis).

The array API standard has no median, quantile or ``nan*`` reductions, and leaves
the sort position of NaN unspecified. Every function here therefore replaces NaN by
``+inf``, sorts once with ``stable=False``, counts the valid samples per slice and
gathers the wanted order statistics (the recipe of SciPy's ``stats.quantile`` and
ccdproc's ``_nanfuncs``). Gathers go through :func:`.sorted_rows.take_rows`, one
flat ``take`` (several times cheaper than ``take_along_axis`` on NumPy and CuPy).
Sorting goes through the namespace's :class:`~zemosaic_xp.core.ops.ArrayOps`, so a
backend's native sort (NumPy's in-place SIMD sort) is used where one is registered.

All functions return NaN, **without a warning**, where a slice has no valid sample:
a fully masked pixel is routine input for a stacker, not an anomaly. Results stay
on the namespace and device of the input.

The ``*_sorted`` helpers work on data that is already sorted along the last axis
(NaN moved to the end as ``+inf``) together with its valid count; the stack core
sorts each band once and reuses it for every statistic.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as _device

from .ops import ops_for
from .sorted_rows import take_rows

__all__ = [
    "nanmedian",
    "nanmean",
    "nanstd",
    "nanquantile",
    "nanmad",
    "sort_valid",
    "median_valid",
    "quantile_sorted",
    "median_sorted",
]

Array = Any

#: Scale that turns a median absolute deviation into a Gaussian-consistent sigma.
MAD_TO_SIGMA = 1.482602218505602


def _last(x: Array, axis: int, xp: Any) -> Array:
    ndim = x.ndim
    axis = axis + ndim if axis < 0 else axis
    if not 0 <= axis < ndim:
        msg = f"`axis` {axis} is out of range for an array of {ndim} dimensions"
        raise ValueError(msg)
    return x if axis == ndim - 1 else xp.moveaxis(x, axis, -1)


def _as_float(x: Array, xp: Any) -> Array:
    if xp.isdtype(x.dtype, "real floating"):
        return x
    return xp.astype(x, xp.float32)


def sort_valid(x: Array, /, *, xp: Any = None) -> tuple[Array, Array]:
    """Sort along the last axis with NaN moved to the end; count valid samples.

    Parameters
    ----------
    x : array, shape (..., N), real floating
        Samples; NaN means "no data".
    xp : namespace, optional
        The array namespace of ``x`` (default: found from ``x``).

    Returns
    -------
    sorted : array, shape (..., N), same dtype
        Ascending values, NaN replaced by ``+inf`` (after every valid value, including
        a genuine ``+inf``).
    n_valid : array, shape (..., 1), int64
        Number of non-NaN samples per slice.

    Notes
    -----
    Both arrays are on the device of ``x``. The sort is the namespace's
    :meth:`~zemosaic_xp.core.ops.ArrayOps.sort_valid` (NumPy's in-place SIMD sort
    where available).
    """
    xp = array_namespace(x) if xp is None else xp
    return ops_for(xp, _device(x)).sort_valid(x)


def median_valid(x: Array, /, *, xp: Any = None) -> Array:
    """Median of each row's valid samples, through the namespace's ops.

    Parameters
    ----------
    x : array, shape (R, M), real floating
        Rows; NaN = no data.
    xp : namespace, optional
        The array namespace of ``x`` (default: found from ``x``).

    Returns
    -------
    array, shape (R,), dtype of ``x``
        ``median_sorted(*sort_valid(x))``: the mean of the two middle values for an
        even count; NaN, without a warning, for a row without valid samples. A
        backend may select instead of sorting (NumPy: ``np.partition`` of long rows),
        with the same values.
    """
    xp = array_namespace(x) if xp is None else xp
    return ops_for(xp, _device(x)).median_valid(x)


def quantile_sorted(s: Array, n_valid: Array, q: float, /, *, xp: Any = None,
                    lo: Array | None = None) -> Array:
    """Quantile ``q`` (linear interpolation, NumPy's default) of sorted samples.

    Parameters
    ----------
    s : array, shape (..., N), real floating
        Output of :func:`sort_valid` (or any ascending data with invalid samples last).
    n_valid : array, shape (..., 1), int
        Number of valid samples per slice (or the size of the sub-range).
    q : float
        Probability in [0, 1].
    xp : namespace, optional
        The array namespace of ``s`` (default: found from ``s``).
    lo : array, shape (..., 1), int, optional
        Start of the sub-range ``[lo, lo + n_valid)`` to use; default 0.

    Returns
    -------
    array, shape (...,), dtype of ``s``
        On the device of ``s``; NaN, without a warning, where ``n_valid == 0``.

    Raises
    ------
    ValueError
        ``q`` is outside [0, 1].
    """
    xp = array_namespace(s) if xp is None else xp
    if not 0.0 <= q <= 1.0:
        msg = f"`q` must be in [0, 1], got {q!r}"
        raise ValueError(msg)
    empty = n_valid == 0
    n_safe = xp.where(empty, xp.ones_like(n_valid), n_valid)
    pos = q * xp.astype(n_safe - 1, xp.float64)
    below = xp.astype(xp.floor(pos), xp.int64)
    above = xp.minimum(below + 1, n_safe - 1)
    frac = xp.astype(pos - xp.astype(below, xp.float64), s.dtype)
    if lo is not None:
        below = below + lo
        above = above + lo
    v_below = take_rows(s, below[..., 0], xp=xp)[..., None]
    v_above = take_rows(s, above[..., 0], xp=xp)[..., None]
    # Interpolate a + f·(b − a) only between distinct values; equal ends (+inf padding
    # included) are zeroed first so that inf − inf is never evaluated (no warning).
    same = (frac == 0) | (v_above == v_below)
    zero = xp.zeros_like(v_below)
    a = xp.where(same, zero, v_below)
    b = xp.where(same, zero, v_above)
    value = xp.where(same, v_below, a + frac * (b - a))
    nan = xp.asarray(xp.nan, dtype=s.dtype, device=_device(s))
    return xp.where(empty, nan, value)[..., 0]


def median_sorted(s: Array, n_valid: Array, /, *, xp: Any = None, lo: Array | None = None) -> Array:
    """Return the median of sorted samples: the mean of the two middle values for an even count.

    Parameters
    ----------
    s : array, shape (..., N), real floating
        Output of :func:`sort_valid` (or any ascending data with invalid samples last).
    n_valid : array, shape (..., 1), int
        Number of valid samples per slice (or the size of the sub-range).
    xp : namespace, optional
        The array namespace of ``s`` (default: found from ``s``).
    lo : array, shape (..., 1), int, optional
        Start of the sub-range ``[lo, lo + n_valid)`` to use; default 0.

    Returns
    -------
    array, shape (...,), dtype of ``s``
        On the device of ``s``; NaN, without a warning, where ``n_valid == 0``.
    """
    xp = array_namespace(s) if xp is None else xp
    empty = n_valid == 0
    n_safe = xp.where(empty, xp.ones_like(n_valid), n_valid)
    start = xp.zeros_like(n_valid) if lo is None else lo
    a = take_rows(s, (start + (n_safe - 1) // 2)[..., 0], xp=xp)
    b = take_rows(s, (start + n_safe // 2)[..., 0], xp=xp)
    return middle_value(a, b, empty[..., 0], xp=xp)


def middle_value(a: Array, b: Array, empty: Array, /, *, xp: Any) -> Array:
    """Return the median from its two middle samples: ``a + (b − a)/2``, ``a`` where they are equal.

    Parameters
    ----------
    a, b : array, shape (...,), real floating
        The lower and upper middle samples (the same one for an odd count).
    empty : array, shape (...,), bool
        Where there was no sample.
    xp : namespace
        The array namespace of ``a``.

    Returns
    -------
    array, shape (...,), dtype of ``a``
        NaN where ``empty``, without a warning (``a`` and ``b`` may be ``+inf`` there).
    """
    # a == b (odd count, or the +inf padding of an empty slice) must not evaluate
    # inf − inf: zero both operands there first (no NaN, no warning).
    same = a == b
    zero = xp.zeros_like(a)
    a_safe = xp.where(same, zero, a)
    b_safe = xp.where(same, zero, b)
    value = xp.where(same, a, a_safe + 0.5 * (b_safe - a_safe))
    nan = xp.asarray(xp.nan, dtype=a.dtype, device=_device(a))
    return xp.where(empty, nan, value)


def nanmedian(x: Array, /, *, axis: int = 0) -> Array:
    """Median along ``axis`` ignoring NaN (mean of the two middle values for even counts).

    Parameters
    ----------
    x : array, shape (..., N, ...), real
        Integers are promoted to float32.
    axis : int
        Reduced axis (default 0, the frame axis).

    Returns
    -------
    array, the input shape without ``axis``, on the input's device
        NaN, without a warning, where a slice has no valid sample.

    Notes
    -----
    O(N log N) per slice (one sort). Unlike ``torch.median`` this is the true median,
    not the lower of the two middle values.
    """
    xp = array_namespace(x)
    s, n = sort_valid(_last(_as_float(x, xp), axis, xp), xp=xp)
    return median_sorted(s, n, xp=xp)


def nanquantile(x: Array, q: float, /, *, axis: int = 0) -> Array:
    """Compute the quantile ``q`` along ``axis`` ignoring NaN, with linear interpolation.

    Matches ``numpy.nanquantile(x, q, axis)`` (method ``"linear"``).

    Parameters
    ----------
    x : array, shape (..., N, ...), real
        Integers are promoted to float32.
    q : float
        Probability in [0, 1].
    axis : int
        Reduced axis (default 0, the frame axis).

    Returns
    -------
    array, the input shape without ``axis``, on the input's device
        NaN, without a warning, where a slice has no valid sample.

    Raises
    ------
    ValueError
        ``q`` is outside [0, 1], or ``axis`` is out of range.
    """
    xp = array_namespace(x)
    s, n = sort_valid(_last(_as_float(x, xp), axis, xp), xp=xp)
    return quantile_sorted(s, n, float(q), xp=xp)


def nanmean(x: Array, /, *, axis: int = 0) -> Array:
    """Compute the mean along ``axis`` ignoring NaN.

    Parameters
    ----------
    x : array, shape (..., N, ...), real
        Integers are promoted to float32.
    axis : int
        Reduced axis (default 0, the frame axis).

    Returns
    -------
    array, the input shape without ``axis``, on the input's device
        NaN, without a warning, where a slice has no valid sample.
    """
    xp = array_namespace(x)
    x = _as_float(x, xp)
    valid = ~xp.isnan(x)
    n = xp.sum(xp.astype(valid, x.dtype), axis=axis)
    total = xp.sum(xp.where(valid, x, xp.zeros_like(x)), axis=axis)
    nan = xp.asarray(xp.nan, dtype=x.dtype, device=_device(x))
    return xp.where(n > 0, total / xp.where(n > 0, n, xp.ones_like(n)), nan)


def nanstd(x: Array, /, *, axis: int = 0, correction: int = 0) -> Array:
    """Compute the standard deviation along ``axis`` ignoring NaN (two-pass).

    Parameters
    ----------
    x : array, shape (..., N, ...), real
        Integers are promoted to float32.
    axis : int
        Reduced axis (default 0, the frame axis).
    correction : int
        Delta degrees of freedom (0 = population, 1 = sample std). An integer, since
        torch accepts no other.

    Returns
    -------
    array, the input shape without ``axis``, on the input's device
        NaN, without a warning, where fewer than ``correction + 1`` samples are valid.

    Raises
    ------
    ValueError
        ``correction`` is not a non-negative integer.

    Notes
    -----
    Two passes (mean, then squared deviations) avoid the cancellation of
    Σx² − (Σx)²/n on CCD counts with a large offset.
    """
    xp = array_namespace(x)
    if isinstance(correction, bool) or not isinstance(correction, int) or correction < 0:
        msg = f"`correction` must be a non-negative integer, got {correction!r}"
        raise ValueError(msg)
    x = _as_float(x, xp)
    valid = ~xp.isnan(x)
    n = xp.sum(xp.astype(valid, x.dtype), axis=axis, keepdims=True)
    mean = xp.sum(xp.where(valid, x, xp.zeros_like(x)), axis=axis, keepdims=True) / xp.where(
        n > 0, n, xp.ones_like(n))
    dev = xp.where(valid, x - mean, xp.zeros_like(x))
    dof = n - correction
    var = xp.sum(dev * dev, axis=axis, keepdims=True) / xp.where(dof > 0, dof, xp.ones_like(dof))
    nan = xp.asarray(xp.nan, dtype=x.dtype, device=_device(x))
    out = xp.where(dof > 0, xp.sqrt(var), nan)
    return xp.squeeze(out, axis=axis)


def nanmad(x: Array, /, *, axis: int = 0, scale: float = 1.0) -> Array:
    """Compute the median absolute deviation from the median along ``axis``, ignoring NaN.

    Parameters
    ----------
    x : array, shape (..., N, ...), real
        Integers are promoted to float32.
    axis : int
        Reduced axis (default 0, the frame axis).
    scale : float
        Multiplier; pass :data:`MAD_TO_SIGMA` (1.4826) for a Gaussian-consistent sigma.

    Returns
    -------
    array, the input shape without ``axis``, on the input's device
        NaN, without a warning, where a slice has no valid sample.

    Raises
    ------
    ValueError
        ``axis`` is out of range.

    Notes
    -----
    Two sorts per slice: the samples, then their absolute deviations.
    """
    xp = array_namespace(x)
    xl = _last(_as_float(x, xp), axis, xp)
    s, n = sort_valid(xl, xp=xp)
    med = median_sorted(s, n, xp=xp)
    dev = xp.abs(xl - med[..., None])
    s2, n2 = sort_valid(dev, xp=xp)
    return scale * median_sorted(s2, n2, xp=xp)
