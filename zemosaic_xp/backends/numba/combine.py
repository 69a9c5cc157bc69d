"""The combine of the band path: each pixel's kept samples into the five results.

:func:`combine_ranges` takes what a rejection kernel of :mod:`.band` found for each
sorted row and writes the image value, weight sum, coverage and rejection counts as
``core.combine`` computes them from the core's :class:`~zemosaic_xp.core.samples.Rejection`:

- a kept range ``[lo, hi)`` of the sorted row (every rejection but the two below);
- a kept set that is not a range (``linear_fit_clip``: rows flagged in ``split``, the
  kept sorted positions in ``keep``);
- every valid sample, the rejected ones replaced by their clamped value
  (``winsorized_quantile`` with ``winsor_rewinsor``: each row's clamp bounds in
  ``winsor``).

Without a rejection, the median of a band sorted by the gather's network needs no sorted
rows at all: :func:`median_of_gather` writes the same results from the gather's medians
and sums.

The mean of a rejection that carries ``kept_sum`` (κ-σ, the WSC flavours) is the
core's ``f32(f64(centre) + kept_sum / count)``. Any other mean is the core's
``f32(Σ f64(x) / count)`` over the kept samples, a float64 pairwise sum in frame
order with zeros for the other frames (``core.combine._combine_mean``). That sum is
first taken along the sorted row, together with a test that it is exact: every kept
value is a multiple of the ulp of the smallest nonzero ``|x|``, so when
``count·max|x| <= 2**29·min|x|`` every partial sum in any order is exact and equals
NumPy's bit for bit. Rows that fail the test (values spanning more than 2**29 ulps,
infinities) are summed again from the frames, in frame order, with NumPy's pairwise
tree (:func:`frame_order_total`). Medians, minima, maxima and counts are exact in
any case, so every result is the core's to the bit, with two corners: the sign of a
zero median, minimum or maximum follows the sort's order of ``−0`` and ``+0``; and a
normalised sample that overflowed to ``+inf`` (still a valid sample) in a pixel
without a tie across its bounds is kept here by value, while the core ranks it among
the invalid samples (also ``+inf``) whenever *another* pixel of its band has such a
tie, and may then drop it from the mean but not from the coverage: the core's result
depends on its band layout there, the kernel's does not.
"""

from __future__ import annotations

import numpy as np

from .common import REASSOCIATE, borrowed, centred_sums, inline, jit, lower_bound, median_range, pairwise_sum
from .constants import COMBINE_CODES, UNCERTAINTY_CODES
from .stored import frame_value
from .winsorized_quantile import clamp

__all__ = ["combine_ranges", "median_of_gather", "frame_order_total", "COMBINE_CODES", "UNCERTAINTY_CODES"]

# Σ|x| <= 2**53·ulp(min|x|) makes a float64 sum of float32 values exact in any order;
# ulp(min|x|) > 2**-24·min|x| for float32, hence this bound.
_EXACT_SPAN = 2.0**29
# Rows of :func:`_errors_from_pairs`' blocks (two float64 rows of it stay in L1).
_PAIR_BLOCK = 512


@inline
def _sum_is_exact(t, r, a, b):
    """Whether every order of float64 additions of the sorted range ``t[r, a:b]`` gives one sum."""
    first = t[r, a]
    last = t[r, b - 1]
    top = np.float64(abs(first) if abs(first) > abs(last) else abs(last))
    if first > 0:
        least = np.float64(first)
    elif last < 0:
        least = -np.float64(last)
    else:
        least = np.inf
        for j in range(a, b):
            v = abs(np.float64(t[r, j]))
            if v != 0.0 and v < least:
                least = v
    return top < np.inf and np.float64(b - a) * top <= _EXACT_SPAN * least


@jit(fastmath=REASSOCIATE)
def _range_sum(t, r, a, b):
    """Σ f64(t[r, a:b]), reassociated (vectorised): NumPy's sum whenever :func:`_sum_is_exact`."""
    total = 0.0
    ur = np.uint64(r)  # unsigned indices: plain vector loads, not gathers (see mad_range)
    for j in range(np.uint64(a), np.uint64(b)):
        total += np.float64(t[ur, j])
    return 0.0 + total  # +0 for a zero sum, as NumPy's (it adds to +0)


@inline
def _range_total(t, r, a, b):
    """Σ f64(t[r, a:b]) of a sorted range with ``b > a``, and whether any order gives it."""
    # The order does not matter when the sum is exact (else the caller sums again in
    # frame order): vectorised, 3-4x a four-accumulator loop at 48 samples.
    return _range_sum(t, r, a, b), _sum_is_exact(t, r, a, b)


@jit(fastmath=REASSOCIATE)
def _range_sums(t, r, a, b):
    """``Σ f64(x)``, ``Σd``, ``Σd²`` over ``t[r, a:b]``, ``d = x − `` the range's middle sample.

    Reassociated (vectorised). The exactness test stays out of this function
    (:func:`_range_total_sums`): inside it, it kept LLVM from vectorising the loop
    (31 against 20 ns a pixel at 32 samples).
    """
    ur = np.uint64(r)  # unsigned indices: plain vector loads, not gathers (40 → 9 ns a row of 48)
    m = np.float64(t[ur, np.uint64(a + (b - a) // 2)])
    total = 0.0
    s1 = 0.0
    s2 = 0.0
    for j in range(np.uint64(a), np.uint64(b)):
        x = np.float64(t[ur, j])
        total += x
        d = x - m
        s1 += d
        s2 += d * d
    return total, s1, s2  # a zero total is +0: added to the +0 start


@inline
def _range_total_sums(t, r, a, b):
    """:func:`_range_total` and, in the same pass, ``Σd``, ``Σd²`` about the range's median sample.

    For the mean's (sum's) standard error: ``Σd² − (Σd)²/n`` is the same about any
    centre (:func:`_from_sums`), and the middle sample of the sorted range is one known
    before the pass, so the error no longer waits for the mean. Reassociated sums
    (vectorised): the total is still NumPy's whenever ``exact`` (any order gives it).
    """
    total, s1, s2 = _range_sums(t, r, a, b)
    return total, _sum_is_exact(t, r, a, b), s1, s2


@jit
def frame_order_total(s, p, a, b, n, split_row, keep, rewinsor, q_lo, q_hi, src, r0, gain, offset, normalise,
                      scaling, buf, used, frames, values):
    """The core's float64 sum of one pixel's kept samples, in frame order.

    Parameters
    ----------
    s : ndarray, shape (P, N), float32
        Sorted rows, invalid last as ``+inf``.
    p, a, b, n : int
        The row, its kept range ``[a, b)`` (or its counts, on a split row) and its valid
        samples.
    split_row : bool
        The kept set is ``keep[p]`` (sorted positions), not a range.
    keep : ndarray, shape (P, N), bool
        Kept sorted positions of split rows.
    rewinsor : bool
        Every valid sample counts; those outside the values of ``[a, b)`` are clamped
        to ``[q_lo, q_hi]``.
    q_lo, q_hi : float32
        The clamp bounds (read only with ``rewinsor``).
    src : ndarray, shape (N, H, Q), float32 or uint16 (stored)
        The frames, as :func:`~.band.gather_sorted` read them: row ``p`` of ``s`` is
        position ``p % Q`` of frame row ``r0 + p // Q``.
    r0 : int
        The first row of the band in ``src``.
    gain, offset : ndarray, shape (N, Q) or (N, 0), float32
        The normalisation, read only when ``normalise``.
    normalise : bool
        Whether the samples are ``f32(f32(x·gain) + offset)``.
    scaling : ndarray, shape (N, 2) or (0, 2), float32
        ``(BSCALE, BZERO)`` of stored 16-bit frames (:mod:`.stored`); unused for float32.
    buf : ndarray, shape (N,), float64
        Scratch for the values.
    used : ndarray, shape (N,), int64
        Scratch for the ranks.
    frames, values : ndarray
        Scratch of :func:`~.common.pairwise_sum`.

    Returns
    -------
    float
        ``numpy.sum(where(keep, x, 0), dtype=float64)`` of the core's samples in frame
        order: the kept set by value bounds, or by rank (ties broken by frame index,
        as the core's ``exact_range_rejection`` and ``keep_from_sorted``) where a tie
        crosses a bound of the range or the set is not a range.
    """
    n_frames = src.shape[0]
    q = src.shape[2]
    i = r0 + p // q
    j = p % q
    inf = np.float32(np.inf)
    lo_v = s[p, a] if b > a else inf
    hi_v = s[p, b - 1] if b > a else -inf
    tie = b > a and ((a > 0 and s[p, a - 1] == lo_v) or (b < n and s[p, b] == hi_v))
    ranks = (split_row or tie) and not rewinsor
    for k in range(n_frames):
        used[k] = 0
    for k in range(n_frames):
        v = frame_value(src, k, i, j, scaling)
        if normalise:
            y = np.float32(np.float32(v * gain[k, j]) + offset[k, j])
            valid = ((v - v) == 0) & (y == y)
        else:
            y = v
            valid = (v - v) == 0
        inside = valid and lo_v <= y <= hi_v
        kept = inside
        if ranks:
            # Rank in the stable sort of where(valid, x, inf): first position of the value + ties before.
            first = lower_bound(s, p, y if valid else inf, 0, n_frames)
            rank = first + used[first]
            used[first] += 1
            kept = valid and (keep[p, rank] if split_row else a <= rank < b)
        value = np.float64(y) if kept else 0.0
        if rewinsor and valid and not inside:
            value = np.float64(clamp(y, q_lo, q_hi))
        buf[k] = value
    return pairwise_sum(buf, n_frames, frames, values)


@inline
def _merge_clamped(s, p, a, b, n, q_lo, q_hi, t):
    """Write the sorted values of row ``p`` with ``[0, a)`` and ``[b, n)`` clamped into ``t[0, :n]``.

    The clamped samples stay sorted among themselves, the low ones below the high
    ones (the clamp is monotone), so one merge with the kept range sorts the row.
    """
    i = a
    j = 0
    v = np.float32(0.0)
    outside = n - (b - a)
    for out in range(n):
        take_kept = j >= outside
        if not take_kept:
            v = clamp(s[p, j if j < a else j + (b - a)], q_lo, q_hi)
            take_kept = i < b and s[p, i] <= v
        if take_kept:
            t[0, out] = s[p, i]
            i += 1
        else:
            t[0, out] = v
            j += 1


@jit
def _copy_kept(s, p, a, b, n, split_row, keep, rewinsor, q_lo, q_hi, t):
    """Copy pixel ``p``'s kept values, sorted, into ``t[0]``: a split or re-winsorised row.

    Other rows' kept values are the range ``s[p, a:b]``, read in place, and nothing
    is returned: the loop of :func:`combine_ranges` then holds no array that a call
    returns or a branch picks. numba counts such references atomically, twice a
    pixel: 70–80 ns of a pixel's ~90 ns combine after κ-σ, half a mean's band time.
    """
    if rewinsor:
        _merge_clamped(s, p, a, b, n, q_lo, q_hi, t)
    elif split_row:
        c = 0
        for j in range(n):
            if keep[p, j]:
                t[0, c] = s[p, j]
                c += 1


@inline
def _range_stats(arr, row, start, count, combine, fused_se):
    """One pass over the kept values ``arr[row, start:start + count]`` (``count >= 1``).

    Returns ``(value, total, exact, s1, s2)``: the median / minimum / maximum
    (``combine`` 1, 3, 4; NaN otherwise), the float64 sum for the mean and the sum and
    whether it is exact in any order, and the range's ``Σd``, ``Σd²`` for the mean's
    standard error when ``fused_se`` (0 otherwise).
    """
    value = np.float32(np.nan)
    total = 0.0
    exact = True
    s1 = 0.0
    s2 = 0.0
    if combine in (1, 3, 4):
        value = _order_value(arr, row, start, count, combine)
    else:
        if fused_se:
            total, exact, s1, s2 = _range_total_sums(arr, row, start, start + count)
        else:
            total, exact = _range_total(arr, row, start, start + count)
    return value, total, exact, s1, s2


@inline
def _order_value(arr, row, start, count, combine):
    """The median (``combine`` 1), minimum (3) or maximum (4) of ``count >= 1`` sorted values."""
    # One exit: an inlined helper returning from several places keeps numba's
    # reference count of `arr` (atomic, once a pixel: ~8 % of a median stack).
    if combine == 1:
        value = median_range(arr, row, start, count)
    elif combine == 3:
        value = arr[row, start]
    else:
        value = arr[row, start + count - 1]
    return value


@inline
def _standard_error(arr, row, start, count, mode, factor, value):
    """The core's ``standard_error`` of ``count >= 2`` sorted survivors ``arr[row, start:start+count]``.

    One pass of float64 sums shifted by the combined value (the mean for a sum), as
    the core: ``Σ(x − μ)² = Σd² − (Σd)²/n``.
    """
    c = np.float64(value)
    if mode == 2:
        c = c / np.float64(count)
    if not (c - c) == 0:
        c = 0.0
    s1, s2 = centred_sums(arr, row, c, start, start + count)  # c is float64 already: same bits
    return _from_sums(s1, s2, count, mode, factor)


@inline
def _from_sums(s1, s2, count, mode, factor):
    """The standard error from ``Σd``, ``Σd²`` of ``count >= 2`` survivors about any centre."""
    n = np.float64(count)
    # Σ(x − μ)² = Σd² − (Σd)²/n, over n(n − 1): one division.
    ss = n * s2 - s1 * s1
    if not ss > 0:
        ss = 0.0
    var = ss / (n * n * (n - 1.0))
    if mode == 3:
        c_med = 0.43 if count % 2 == 1 else 1.39
        var = n * var * (0.5 if count == 2 else (np.pi / 2.0) / (n + c_med))
    else:
        var *= factor
        if mode == 2:
            var *= n * n
    return np.float32(np.sqrt(var))


@jit
def _errors_from_acc(acc1, acc2, from_acc, every_row, coverage, uncertainty, se_mode, se_factor):
    """``uncertainty[p]`` from ``Σd = acc1[p]``, ``Σd² = acc2[p]`` of ``coverage[p]`` survivors.

    The rows flagged in ``from_acc``, or, when ``every_row``, every row (NaN below two
    survivors, whatever the sums hold there). The combine loop leaves each row's sums
    here (the mean's fused pass, or the band's ``se_sums``): in a pass of their own the
    rows are independent, and LLVM vectorises the divisions and square roots over
    them — from two contiguous arrays: from interleaved pairs (``(P, 2)``) it loads
    element by element, 5.4 against 1.7 ns a row (the median's estimator). The usual
    case, every row, stores unconditionally: a conditional store compiles to masked
    stores (``vmaskmovps``), microcoded on AMD cores.
    """
    nan = np.float32(np.nan)
    if every_row:
        for p in range(uncertainty.shape[0]):
            count = coverage[p]
            se = _from_sums(acc1[p], acc2[p], count, se_mode, se_factor)
            uncertainty[p] = se if count >= 2 else nan
    else:
        for p in range(uncertainty.shape[0]):
            if from_acc[p]:
                uncertainty[p] = _from_sums(acc1[p], acc2[p], coverage[p], se_mode, se_factor)


@jit
def _errors_from_pairs(sums, coverage, uncertainty, se_mode, se_factor):
    """Every ``uncertainty[p]`` from ``Σd = sums[p, 0]``, ``Σd² = sums[p, 1]`` of ``coverage[p]`` survivors.

    NaN below two survivors. The pairs are copied apart a block of rows at a time, and
    :func:`_errors_from_acc` runs on the two contiguous blocks (vectorised).
    """
    rows = uncertainty.shape[0]
    acc = np.empty((2, _PAIR_BLOCK))
    flags = np.zeros(0, np.bool_)
    for p0 in range(0, rows, _PAIR_BLOCK):
        m = min(_PAIR_BLOCK, rows - p0)
        for i in range(m):
            acc[0, i] = sums[p0 + i, 0]
            acc[1, i] = sums[p0 + i, 1]
        _errors_from_acc(acc[0, :m], acc[1, :m], flags, True, coverage[p0:p0 + m], uncertainty[p0:p0 + m],
                         se_mode, se_factor)


@jit
def _range_errors(s, lo, hi, split, rewinsor, image, uncertainty, se_mode, se_factor):
    """The standard errors that :func:`combine_ranges` left for a pass of their own.

    Those of the rows whose survivors are a range ``s[p, lo[p]:hi[p]]`` (not a split
    or re-winsorised row) of at least two samples, centred on the combined value
    ``image[p]``. In a pass of their own the rows are independent: the latency of
    each row's mean → sums → square root chain overlaps the next row's (in the
    combine loop it does not, 3–7× slower).
    """
    if rewinsor or se_mode <= 0:
        return
    s = borrowed(s)  # centred_sums per row (through _standard_error): no reference counts
    has_split = split.shape[0] > 0
    n_cols = s.shape[1]
    for p in range(s.shape[0]):
        count = hi[p] - lo[p]
        if count == n_cols:
            # Whole rows (every sample valid and kept): bounds invariant over the loop,
            # which LLVM vectorises 3× better than bounds read per row.
            uncertainty[p] = _standard_error(s, p, 0, n_cols, se_mode, se_factor, image[p])
        elif count >= 2 and not (has_split and split[p]):
            uncertainty[p] = _standard_error(s, p, lo[p], count, se_mode, se_factor, image[p])


@jit
def combine_ranges(s, n_valid, combine, lo, hi, iterations, centre, kept_sum, split, keep, winsor,
                   src, r0, gain, offset, normalise, scaling, image, weight_sum, coverage, n_low, n_high, counters,
                   uncertainty, se_mode, se_factor, se_sums):
    """Combine each pixel's kept samples of its sorted row, as ``core.combine``.

    Parameters
    ----------
    s : ndarray, shape (P, N), float32
        Sorted rows, invalid last as ``+inf``.
    n_valid : ndarray, shape (P,), int64
        Valid samples per row.
    combine : int
        :data:`COMBINE_CODES`.
    lo, hi, iterations : ndarray, shape (P,), int64
        The rejection's kept range ``[lo, hi)`` (on a split row: samples rejected low,
        and ``n_valid`` − samples rejected high) and iterations.
    centre, kept_sum : ndarray, shape (P,) or (0,), float32 and float64
        The rejection's median and ``Σ (x − median)`` over the kept range, for the mean;
        empty for rejections without them (the mean is then summed).
    split : ndarray, shape (P,) or (0,), bool
        Rows whose kept set is ``keep[p]`` rather than a range; empty: none.
    keep : ndarray, shape (P, N) or (0, 0), bool
        Kept sorted positions of the split rows.
    winsor : ndarray, shape (P, 2) or (0, 2), float32
        Non-empty: every valid sample is combined, those outside the values of the
        range clamped to ``[winsor[p, 0], winsor[p, 1]]`` (``winsor_rewinsor``).
    src : ndarray, shape (N, H, Q), float32 or uint16 (stored)
        The frames, for :func:`frame_order_total`.
    r0 : int
        The first row of the band in ``src``.
    gain, offset : ndarray, shape (N, Q) or (N, 0), float32
        The normalisation of :func:`~.band.gather_sorted`.
    normalise : bool
        Whether to apply it.
    scaling : ndarray, shape (N, 2) or (0, 2), float32
        ``(BSCALE, BZERO)`` of stored 16-bit frames; unused for float32.
    image, weight_sum : ndarray, shape (P,), float32 (outputs)
        NaN / 0 where no sample survived.
    coverage, n_low, n_high : ndarray, shape (P,), int32 (outputs)
        Samples combined, rejected below and rejected above.
    counters : ndarray, shape (4,), int64 (output)
        Max iterations, Σ n_valid, Σ n_low, Σ n_high over the band.
    uncertainty : ndarray, shape (P,) or (0,), float32 (output)
        Standard error of each pixel (``core.uncertainty.standard_error``): NaN
        below two survivors or without an estimator; empty: not computed.
    se_mode : int
        :data:`UNCERTAINTY_CODES` of the combine, 0 for none (NaN).
    se_factor : float
        Variance factor of the mean's estimator (the clip correction, 1 without).
    se_sums : ndarray, shape (P, 2) or (0, 2), float64
        ``Σd``, ``Σd²`` of each row's survivors about any centre, when the band path
        already has them (the gather's sums when every valid sample survives): the
        standard error then costs no pass over the samples; empty: summed here.

    Notes
    -----
    median: mean of the two middle kept values; sum: ``f32(count)·mean``; min / max:
    the smallest / largest kept value.
    """
    s = borrowed(s)  # read by the inlined helpers of every pixel: no reference counts
    rows, n_cols = s.shape
    nan = np.float32(np.nan)
    has_sum = kept_sum.shape[0] > 0
    has_split = split.shape[0] > 0
    rewinsor = winsor.shape[0] > 0
    has_se = uncertainty.shape[0] > 0
    t = np.empty((1, n_cols), np.float32)
    buf = np.empty(n_cols)
    used = np.empty(n_cols, np.int64)
    frames = np.empty((64, 3), np.int64)
    values = np.empty(64)
    deferred = False
    # Standard errors from sums in a pass of their own after the loop: the band's
    # (se_sums), or the mean's fused pass's, kept in acc (Σd, Σd² as two rows). In the
    # loop each is a dependent chain of its pixel: ~6 ms of a 32 × 1024² stack's ~170 ms
    # of CPU (docs/performance.md).
    post_sums = has_se and se_mode > 0 and se_sums.shape[0] > 0
    fuse_acc = has_se and se_mode > 0 and not post_sums and combine in (0, 2) and not has_sum
    acc = np.empty((2, rows if fuse_acc else 0))
    from_acc = np.zeros(rows if fuse_acc else 0, np.bool_)
    every_row = True  # every row's error from acc (rows below two samples: NaN)
    max_it = 0
    total_valid = 0
    total_low = 0
    total_high = 0
    for p in range(rows):
        n = n_valid[p]
        a = lo[p]
        b = hi[p]
        if iterations[p] > max_it:
            max_it = iterations[p]
        split_row = has_split and split[p]
        q_lo = np.float32(0.0)
        q_hi = np.float32(0.0)
        count = b - a
        if rewinsor:
            q_lo = winsor[p, 0]
            q_hi = winsor[p, 1]
            count = n
        # The kept values, sorted: the range s[p, a:b], or a copy in t (split and
        # re-winsorised rows).
        use_t = rewinsor or split_row
        if use_t:
            _copy_kept(s, p, a, b, n, split_row, keep, rewinsor, q_lo, q_hi, t)
        value = nan
        # The mean's standard error from the pass that sums it (a range of s, no sums at hand).
        fused_se = fuse_acc and not use_t
        s1 = 0.0
        s2 = 0.0
        if count > 0:
            if has_sum and combine in (0, 2):
                mean = np.float32(np.float64(centre[p]) + kept_sum[p] / np.float64(count))
                value = mean if combine == 0 else np.float32(np.float32(count) * mean)
            else:
                # Two calls, not one on a chosen array: see _copy_kept.
                if use_t:
                    value, total, exact, s1, s2 = _range_stats(t, 0, 0, count, combine, False)
                else:
                    value, total, exact, s1, s2 = _range_stats(s, p, a, count, combine, fused_se)
                if combine in (0, 2):
                    if not exact:
                        total = frame_order_total(s, p, a, b, n, split_row, keep, rewinsor, q_lo, q_hi, src, r0,
                                                  gain, offset, normalise, scaling, buf, used, frames, values)
                    mean = np.float32(total / np.float64(count))
                    value = mean if combine == 0 else np.float32(np.float32(count) * mean)
        image[p] = value
        if has_se and not post_sums:
            se = nan
            if count >= 2 and se_mode > 0:
                if fused_se:
                    acc[0, p] = s1
                    acc[1, p] = s2
                    from_acc[p] = True
                else:
                    every_row = False
                    if use_t:
                        se = _standard_error(t, 0, 0, count, se_mode, se_factor, value)
                    else:
                        deferred = True  # a range of s: summed by _range_errors below
            uncertainty[p] = se
        coverage[p] = count
        weight_sum[p] = np.float32(count)
        n_low[p] = a
        n_high[p] = n - b
        total_valid += n
        total_low += a
        total_high += n - b
    if fuse_acc:
        _errors_from_acc(acc[0], acc[1], from_acc, every_row, coverage, uncertainty, se_mode, se_factor)
    if post_sums:
        _errors_from_pairs(se_sums, coverage, uncertainty, se_mode, se_factor)
    if deferred:
        _range_errors(s, lo, hi, split, rewinsor, image, uncertainty, se_mode, se_factor)
    counters[0] = max_it
    counters[1] = total_valid
    counters[2] = total_low
    counters[3] = total_high


@jit
def median_of_gather(n_valid, centre, sums, image, weight_sum, coverage, n_low, n_high, counters, uncertainty,
                     se_mode):
    """The median of every valid sample, from what the gather already holds.

    Without a rejection, the median combine of a band that :func:`~.gather.gather_sorted`
    sorted with its network is the gather's own ``centre`` (the same midpoint of the
    two middle valid samples :func:`combine_ranges` takes), and its standard error
    comes from the gather's ``sums``: the sorted rows are neither stored nor read
    again. Writes what :func:`combine_ranges` writes for ``reject="none"``.

    Parameters
    ----------
    n_valid : ndarray, shape (P,), int64
        Valid samples per pixel.
    centre : ndarray, shape (P,), float32
        Median of each pixel's valid samples (0 without any).
    sums : ndarray, shape (P, 2), float64
        ``Σd``, ``Σd²`` of the valid samples about ``centre``.
    image, weight_sum : ndarray, shape (P,), float32 (outputs)
        The median (NaN without samples) and the sample count.
    coverage, n_low, n_high : ndarray, shape (P,), int32 (outputs)
        The sample count, 0 and 0.
    counters : ndarray, shape (4,), int64 (output)
        0 iterations, Σ n_valid, 0, 0.
    uncertainty : ndarray, shape (P,) or (0,), float32 (output)
        Standard error of the median (NaN below two samples); empty: not computed.
    se_mode : int
        ``UNCERTAINTY_CODES["median"]``.
    """
    nan = np.float32(np.nan)
    total = 0
    for p in range(n_valid.shape[0]):
        n = n_valid[p]
        image[p] = centre[p] if n > 0 else nan
        weight_sum[p] = np.float32(n)
        coverage[p] = n
        n_low[p] = 0
        n_high[p] = 0
        total += n
    if uncertainty.shape[0] > 0:
        _errors_from_pairs(sums, coverage, uncertainty, se_mode, 1.0)
    counters[0] = 0
    counters[1] = total
    counters[2] = 0
    counters[3] = 0
