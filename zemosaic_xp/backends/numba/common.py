"""What every numba kernel shares: the decorators, the constants, the inline row helpers.

Each helper here is written once and compiled into its callers (``inline="always"``).
They work on one row ``r`` of a 2-D array ``s`` of sorted float32 samples (see the
row-kernel contract in :mod:`zemosaic_xp.backends.numba`) and repeat the core's
arithmetic exactly: float32 where the core computes in float32, float64 sums of exact
float32 differences, the core's NaN behaviour in comparisons.

Compiled code is cached on disk (``cache=True``) next to the modules or, where that
directory is read-only, in numba's user-wide cache directory; where neither can be
written the kernels are compiled in every process rather than warn.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from ...core.nanstats import MAD_TO_SIGMA
from .blas_probe import import_arraymath
from .cache_load import fast_cache_load
from .constants import NO_SUMS

__all__ = ["jit", "inline", "cache_enabled", "REASSOCIATE", "NO_SUMS", "MAD_TO_SIGMA", "HUBER_C", "WINSOR_CORRECTION",
           "TOLERANCE", "INNER_MAX_ITERS", "SIGMA_FLOOR", "survivors_floor", "midpoint", "nonneg", "np_maximum",
           "median_range", "median_sums_lanes",
           "centred_sums", "first_at_least", "first_above", "lower_bound", "mad_range", "pairwise_sum",
           "pairwise_sum_short", "borrowed"]

#: fastmath flags of the reductions that may add in any order (``jit(fastmath=...)``):
#: reassociation only, so that LLVM vectorises the sum; no ``nnan`` / ``ninf`` (a valid
#: sample may be ``+inf``) and no contraction (the roundings stay those of the source).
REASSOCIATE = {"reassoc"}

# The constants of the winsorised sigma clips, as in the core (tests check that they
# agree): PixInsight/Siril's Huber winsorisation (core/reject/winsorized_sigma_clip.py) ...
HUBER_C = 1.5
WINSOR_CORRECTION = 1.134
INNER_MAX_ITERS = 50
# ... and both flavours' convergence tolerance; ZeMosaic's σ floor (core/reject/winsorized_sigma_clip_zemosaic.py).
TOLERANCE = 5e-4
SIGMA_FLOOR = 1e-10

#: False once numba could not write a cache anywhere: compile in every process.
cache_enabled = True


def jit(fn=None, **options):
    """``numba.njit(nogil=True)`` with an on-disk cache when numba finds a writable place.

    Cached kernels load without numba's compiler set-up (:mod:`.cache_load`).

    Parameters
    ----------
    fn : callable, optional
        The function to compile; omitted for ``@jit(option=...)``.
    **options
        Extra numba options (``fastmath=...``).

    Returns
    -------
    callable
        The compiled function (a numba dispatcher), or a decorator when ``fn`` is omitted.
    """
    if fn is None:
        return lambda f: jit(f, **options)
    global cache_enabled
    options = {"nogil": True, "error_model": "numpy", **options}
    if cache_enabled:
        try:
            return fast_cache_load(numba.njit(cache=True, **options)(fn))
        except RuntimeError:
            # Load-bearing: numba raises here when neither this package's __pycache__
            # nor its user-wide cache directory can be written (read-only install, no
            # home); we compile in every process instead.
            cache_enabled = False
    import_arraymath()  # every process compiles: numba's BLAS probe without scipy.linalg
    return numba.njit(**options)(fn)


def inline(fn):
    """Compile ``fn`` into its callers (``inline="always"``).

    Parameters
    ----------
    fn : callable
        A small helper called once per row: a call and an array view per row cost
        more than the row's work at small N.

    Returns
    -------
    callable
        The numba dispatcher, compiled into each caller at its first compilation.
    """
    return numba.njit(nogil=True, inline="always", error_model="numpy")(fn)


@intrinsic
def _address_as_pointer(typingctx, addr):
    """The integer ``addr`` as a ``void*`` (for :func:`borrowed`)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(addr), codegen


def borrowed(a):
    """``a`` without numba's reference counting: the same data, shape and dtype.

    numba counts the references of an array, with atomic operations, wherever a
    per-pixel loop hands it to an inlined helper whose exits it cannot pair up
    (~10–20 ns a pixel). A view made by ``numba.carray`` from ``a``'s address owns
    no memory, so those counts do nothing. Valid while ``a`` lives: the caller
    keeps ``a`` (an argument) for the whole loop.

    Parameters
    ----------
    a : ndarray
        The array. Only a C-contiguous one (numba's layout ``"C"``) is borrowed: any
        other layout is returned as it is (a C-ordered view of strided memory would
        read the wrong elements).

    Returns
    -------
    ndarray
        A C-ordered view of ``a``'s memory, no owner; ``a`` itself outside numba or
        for other layouts.
    """
    return a


@overload(borrowed, inline="always")
def _borrowed(a):
    if isinstance(a, types.Array) and a.layout == "C":
        def view(a):
            return numba.carray(_address_as_pointer(a.ctypes.data), a.shape, a.dtype)
        return view
    return lambda a: a


# ---------------------------------------------------------------------------- scalars
@inline
def survivors_floor(min_survivors, n):
    """Return the fewest samples a row of ``n`` valid samples may keep.

    Parameters
    ----------
    min_survivors : int
        ``StackConfig.min_survivors``.
    n : int
        Valid samples of the row.

    Returns
    -------
    int
        ``min(min_survivors, n − 1)`` when ``n >= 3``, else ``min(min_survivors, n)``:
        the core's ``reject._common.min_keep``.
    """
    cap = n - 1 if n >= 3 else n
    return min_survivors if min_survivors < cap else cap


@inline
def midpoint(a, b):
    """Return ``a + 0.5·(b − a)`` in float32, as NumPy evaluates it on float32 arrays.

    Parameters
    ----------
    a, b : float32
        The two middle values of a sorted range, ``a <= b``.

    Returns
    -------
    float32
        ``a`` itself when ``a == b`` (also for two equal infinities).
    """
    if a == b:
        return a
    return np.float32(a + np.float32(np.float32(0.5) * np.float32(b - a)))


@inline
def nonneg(v):
    """Return ``maximum(v, 0)`` with NaN kept, as ``xp.maximum``.

    Parameters
    ----------
    v : float
        A variance that rounding may have made slightly negative.

    Returns
    -------
    float
        ``v``, or 0.0 when ``v < 0``.
    """
    return 0.0 if v < 0.0 else v


@inline
def np_maximum(a, b):
    """Return ``numpy.maximum(a, b)`` of two scalars: NaN propagates, ``b`` on ties.

    Parameters
    ----------
    a, b : float
        The two values.

    Returns
    -------
    float
        ``a`` when ``a > b`` or ``a`` is NaN, else ``b`` (NumPy's choice for ``±0``
        too).
    """
    return a if (a > b or a != a) else b


# ---------------------------------------------------------------------------- rows
@inline
def median_range(s, r, lo, count):
    """Return the median of ``s[r, lo:lo+count]`` in float32, as ``median_sorted``.

    Parameters
    ----------
    s, r, lo, count : ndarray, int, int, int
        The range of ``count`` samples from index ``lo`` of the sorted row ``s[r]``.

    Returns
    -------
    float32
        The middle value, or the midpoint of the two middle values (:func:`midpoint`);
        NaN for an empty range.
    """
    # One exit (see mad_range): several would bring back reference counting.
    value = np.float32(np.nan)
    if count > 0:
        value = midpoint(s[r, lo + (count - 1) // 2], s[r, lo + count // 2])
    return value


@jit(fastmath=REASSOCIATE)
def centred_sums(s, r, centre, lo, hi):
    """Sum ``d`` and ``d²`` over ``s[r, lo:hi]``, ``d = f64(x) − f64(centre)``.

    Parameters
    ----------
    s, r : ndarray, int
        A sorted row, ``s[r]``.
    centre : float32
        The value the differences are taken from.
    lo, hi : int
        The range ``[lo, hi)``.

    Returns
    -------
    s1 : float
        ``Σd`` in float64, 0.0 for an empty range.
    s2 : float
        ``Σd²`` in float64, 0.0 for an empty range.

    Notes
    -----
    Compiled with reassociation (:data:`REASSOCIATE`): LLVM vectorises the two sums,
    3–4× faster than four scalar accumulators at 32–128 samples. The order of the
    additions is then the vectoriser's; the sums are exact, hence the same in any
    order, whenever the ``d²`` are (``|d|`` below ``2**26`` ulps of the smallest
    sample: any astronomical frame).
    """
    c = np.float64(centre)
    a = 0.0
    q = 0.0
    # Unsigned indices: no negative-index wrap-around per load, which made LLVM
    # vectorise with gathers (see mad_range).
    ur = np.uint64(r)
    for j in range(np.uint64(lo), np.uint64(hi)):
        d = np.float64(s[ur, j]) - c
        a += d
        q += d * d
    return a, q


@inline
def first_at_least(s, r, threshold, lo, hi):
    """Return ``lo + count(s[r, lo:hi] < threshold)``, scanning up from ``lo``.

    Parameters
    ----------
    s, r, threshold, lo, hi : ndarray, int, float, int, int
        The sorted row ``s[r]``, the lower bound (NaN counts nothing) and the range
        ``[lo, hi)`` to search.

    Returns
    -------
    int
        The first ``j`` in ``[lo, hi]`` with ``s[r, j] >= threshold``.
    """
    j = lo
    while j < hi and s[r, j] < threshold:
        j += 1
    return j


@inline
def first_above(s, r, threshold, lo, hi):
    """Return ``lo + count(s[r, lo:hi] <= threshold)``, scanning down from ``hi``.

    Parameters
    ----------
    s, r, threshold : ndarray, int, float
        The sorted row ``s[r]`` and the upper bound. A NaN bound counts nothing, as in
        the core's searches: the test is written ``not <=`` rather than ``>``.
    lo, hi : int
        The range ``[lo, hi)`` to search.

    Returns
    -------
    int
        One past the last ``j`` in ``[lo, hi)`` with ``s[r, j] <= threshold``.
    """
    j = hi
    while j > lo and not s[r, j - 1] <= threshold:
        j -= 1
    return j


@inline
def lower_bound(s, r, value, lo, hi):
    """Return the first ``j`` in ``[lo, hi]`` with ``s[r, j] >= value``, by binary search.

    Parameters
    ----------
    s, r : ndarray, int
        The sorted row ``s[r]``, without NaN.
    value : float
        The value searched (not NaN).
    lo, hi : int
        The range ``[lo, hi)`` to search.

    Returns
    -------
    int
        :func:`first_at_least` of the same arguments, in ``log2(hi − lo)`` steps.
    """
    while lo < hi:
        mid = (lo + hi) // 2
        if s[r, mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@inline
def mad_range(s, r, lo, count, centre, dev):
    """Return the median of ``|s[r, lo:lo+count] − centre|`` in float32.

    Parameters
    ----------
    s, r, lo, count : ndarray, int, int, int
        The range, as :func:`median_range`.
    centre : float32
        Its median.
    dev : ndarray, shape (>= count,), float32
        Scratch for the deviations (no branch on the data).

    Returns
    -------
    float32
        The MAD; NaN for an empty range.

    Notes
    -----
    Along a sorted row the deviations fall to the centre and rise after it, so the
    ``k + 1`` smallest are a window of ``k + 1`` neighbours whose largest deviation
    is at one of its ends: the k-th smallest is the least such end over the windows
    (no branchy merge of the two runs).
    """
    # One exit (no early return): several would make numba count references to the
    # arrays at every call, an atomic operation per array. An unsigned column index:
    # numba then adds no negative-index wrap-around to each load, and LLVM vectorises
    # the loop with plain loads instead of gathers (46 → 25 ns a row of 48 for a
    # variable ``lo``, the same bits).
    base = np.uint64(lo)
    for j in range(count):
        dev[j] = abs(np.float32(s[r, base + np.uint64(j)] - centre))
    k = (count - 1) // 2 if count > 0 else 0
    lower = np.float32(np.inf)
    for w in range(count - k):
        v = dev[w] if dev[w] > dev[w + k] else dev[w + k]
        lower = v if v < lower else lower
    upper = lower
    if count % 2 == 0:
        upper = np.float32(np.inf)
        for w in range(count - k - 1):
            v = dev[w] if dev[w] > dev[w + k + 1] else dev[w + k + 1]
            upper = v if v < upper else upper
    mad = midpoint(lower, upper)
    return mad if count > 0 else np.float32(np.nan)


# ---------------------------------------------------------------------------- NumPy's sums
@inline
def _pairwise_block(buf, start, n):
    """NumPy's pairwise sum of ``buf[start:start + n]`` for ``n <= 128`` (its base case)."""
    # One exit (see mad_range): several would bring back reference counting.
    res = 0.0
    i = 0
    if n >= 8:
        r0 = buf[start]
        r1 = buf[start + 1]
        r2 = buf[start + 2]
        r3 = buf[start + 3]
        r4 = buf[start + 4]
        r5 = buf[start + 5]
        r6 = buf[start + 6]
        r7 = buf[start + 7]
        i = 8
        while i < n - n % 8:
            j = start + i
            r0 += buf[j]
            r1 += buf[j + 1]
            r2 += buf[j + 2]
            r3 += buf[j + 3]
            r4 += buf[j + 4]
            r5 += buf[j + 5]
            r6 += buf[j + 6]
            r7 += buf[j + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += buf[start + i]
        i += 1
    return res


@inline
def pairwise_sum_short(buf, n):
    """:func:`pairwise_sum` of ``n <= 128`` values (NumPy's base case), without its scratch.

    For per-pixel loops: numba counts the references of every array an inlined
    helper takes, atomically, around each call; this one takes one array, not three.

    Parameters
    ----------
    buf : ndarray, shape (>= n,), float64
        The values, in the order NumPy would add them.
    n : int
        How many to add, at most 128.

    Returns
    -------
    float
        ``numpy.sum(buf[:n])`` to the last bit, ``+0`` for a zero sum.
    """
    return 0.0 + _pairwise_block(buf, 0, n)


@inline
def pairwise_sum(buf, n, frames, values):
    """Return ``numpy.sum(buf[:n])`` to the last bit (NumPy's pairwise summation).

    Parameters
    ----------
    buf : ndarray, shape (>= n,), float64
        The values, in the order NumPy would add them (a row of the core's array).
    n : int
        How many to add.
    frames : ndarray, shape (64, 3), int64
        Scratch: the stack of the halving tree.
    values : ndarray, shape (64,), float64
        Scratch: the stack of partial sums.

    Returns
    -------
    float
        The float64 sum, as ``numpy.sum`` (or ``sum(..., axis=-1)`` of a row, and of
        float32 data with ``dtype=float64``) computes it, ``+0`` for a zero sum.

    Notes
    -----
    Eight accumulators over blocks of up to 128 values; above 128 values NumPy halves
    the range (cut at a multiple of 8) recursively. The same tree is walked here with
    an explicit stack, since numba cannot load a cached recursive function.
    """
    total = 0.0
    if n <= 128:
        total = _pairwise_block(buf, 0, n)
    else:
        top = 0  # frames[i] = (start, count, stage); stage 0: left next, 1: right next, 2: add
        depth = 0  # values on the value stack
        frames[0, 0] = 0
        frames[0, 1] = n
        frames[0, 2] = 0
        while top >= 0:
            start = frames[top, 0]
            count = frames[top, 1]
            if count <= 128:
                values[depth] = _pairwise_block(buf, start, count)
                depth += 1
                top -= 1
                continue
            half = count // 2
            half -= half % 8
            stage = frames[top, 2]
            frames[top, 2] = stage + 1
            if stage == 0:
                top += 1
                frames[top, 0] = start
                frames[top, 1] = half
                frames[top, 2] = 0
            elif stage == 1:
                top += 1
                frames[top, 0] = start + half
                frames[top, 1] = count - half
                frames[top, 2] = 0
            else:
                depth -= 1
                values[depth - 1] = values[depth - 1] + values[depth]
                top -= 1
        total = values[0]
    # NumPy adds the tree to the reduction's initial +0: a sum of zeros is never −0.
    return 0.0 + total


# ---------------------------------------------------------------------------- sorted lanes
@inline
def median_sums_lanes(block, count, centre, sums, base, m, med32, med, acc1, acc2):
    """Median, ``Σd`` and ``Σd²`` (``d = x − median``) of each sorted lane of ``block``.

    Vectorised over the lanes: every lane's median is first taken as if it were
    full (two rows of the block), then the few lanes with missing samples are
    redone; one float64 accumulator per lane adds the lane's samples in order,
    where a loop along one row is a chain of dependent adds. ``med32`` (float32),
    ``med``, ``acc1``, ``acc2`` (float64) are scratch arrays of one value per lane.
    The invalid samples of ``block`` (already stored) are overwritten by the median:
    they then add exact zeros, and the loop needs no mask.

    Parameters
    ----------
    block : ndarray, shape (N, L), float32
        Sorted lanes (a sorting network's block), invalid samples last as ``+inf``.
    count : ndarray, shape (L,), int
        Valid samples of each lane.
    centre : ndarray, float32 (output)
        ``centre[base + lane]``: the lane's median, 0 without valid samples.
    sums : ndarray, shape (·, 2), float64 (output)
        ``sums[base + lane]``: ``Σd``, ``Σd²`` of the lane's valid samples.
    base, m : int
        First output row, and lanes to write (the others are padding).
    med32, med, acc1, acc2 : ndarray, shape (L,)
        Scratch (float32, float64, float64, float64).
    """
    n, lanes = block.shape
    lower = block[(n - 1) // 2]
    upper = block[n // 2]
    for lane in range(lanes):
        a = lower[lane]
        b = upper[lane]
        med32[lane] = midpoint(a, b)
    for lane in range(lanes):
        c = count[lane]
        if c < n:
            value = np.float32(0.0)  # no valid sample: centre 0, as the core
            if c > 0:
                a = block[(c - 1) // 2, lane]
                b = block[c // 2, lane]
                value = midpoint(a, b)
            med32[lane] = value
            for k in range(c, n):
                block[k, lane] = value
    for lane in range(lanes):
        med[lane] = np.float64(med32[lane])
        acc1[lane] = 0.0
        acc2[lane] = 0.0
    for k in range(n):
        brow = block[k]
        for lane in range(lanes):
            d = np.float64(brow[lane]) - med[lane]
            acc1[lane] += d
            acc2[lane] += d * d
    for lane in range(m):
        centre[base + lane] = med32[lane]
        sums[base + lane, 0] = acc1[lane]
        sums[base + lane, 1] = acc2[lane]
