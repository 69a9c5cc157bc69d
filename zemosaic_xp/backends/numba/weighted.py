"""Weighted stacks in the numba band path: each sample's weight carried through the sort.

The core weighs a sample by ``w = f32(f32(frame weight · pixel weight) · radial
weight)`` (``core.pipeline.stack_band``: quality × user frame weights of the plan,
per-pixel weights of the source, the radial map of the frame position; a missing
factor is 1, which changes no bit), and a sample whose weight is not finite or not
``> 0`` is "no data" (``core.samples.Samples``). Rejections look at the values only,
so weights change two things: which samples are valid, and the combine, which then
works on the keep mask in frame order (``core.combine``) — the weighted mean
``f32(Σ f64(f32(w·x)) / Σ f64(w))``, the weight sum ``f32(Σ f64(w))`` and the weighted
standard error of ``core.uncertainty``.

A band goes through three compiled steps, as the unweighted path of :mod:`.band`:

1. :func:`gather_keys` (frames-first bands) or :func:`gather_key_rows` (samples-last
   blocks: grid cells) reads 32 pixels at a time, normalises them, forms their
   weights, and makes of each sample one int64 key: the float32's bits mapped to an
   ordered integer, then the frame index. Sorting the keys (a sorting network for
   N <= 48, NumPy's sort above) is a *stable* sort of the values: equal values stay
   in frame order, as the core's ranks (``_sorted_ranks``: a stable argsort) break
   ties, so every kept range and split set names the same frames as the core's keep
   mask. The sorted keys are split into the rows ``s`` the rejection kernels read and
   the frame of each position (in the gather with a network, where the medians and
   centred sums are also taken as the unweighted gather does; :func:`unpack_keys`
   after NumPy's sort);
2. the rejection kernels of :data:`.rejections.REJECTIONS`, unchanged, on the values;
3. :func:`combine_weighted` puts each pixel's kept samples back in frame order and
   adds them with NumPy's pairwise summation (:func:`~.common.pairwise_sum`), so the
   mean, the sum and the weight sum are the core's bit for bit.

The standard error is the core's estimator, its float64 sums taken over each row's
kept samples right after the combine has put them in frame order (``Σ w·d``, ``Σ w²``,
``Σ w²d``, ``Σ w²d²``; the median's ``Σ d``, ``Σ d²``) where the core adds with ``vecdot`` (BLAS) in its own
order: equal up to float64 rounding (the tests allow 1e-6 relative); the divisions and
square roots then run a block of rows at a time (vectorised). Two corners as
in :mod:`.combine`: ``−0`` sorts before ``+0`` here (the core keeps them in frame
order), and a sample whose normalised value overflowed to ``±inf`` is kept by rank
here where the core may keep it by value; with such a sample in a band the rejection
kernels take their own sums.
"""

from __future__ import annotations

import numpy as np

from .combine import _copy_kept, _from_sums, _order_value
from .common import REASSOCIATE, borrowed, inline, jit, median_sums_lanes, pairwise_sum, pairwise_sum_short
from .sorting import NETWORK_LANES as LANES
from .sorting import network
from .stored import frame_rows
from .winsorized_quantile import clamp

__all__ = ["gather_keys", "gather_key_rows", "unpack_keys", "combine_weighted"]

_FLIP = 0x7FFFFFFF
# Rows whose standard errors wait for one vectorised pass (:func:`_weighted_errors`).
_SE_BLOCK = 256
# Below this many frames a row's error sums do not fill a vector: they are summed for a
# block of rows at once, the rows as the vector lanes (:func:`_weighted_sums`); from it
# on, each row's right after its combine, its frames as the lanes (:func:`_row_sums`).
# 8 frames: ~30 ns a row one by one; 32 frames: the block's copies cost more than that.
_LANES_ARE_ROWS_BELOW = 16
_LOW = 0xFFFFFFFF


@inline
def _ordered(bits):
    """The float32 bits ``bits`` (int32) as an int64 in the order of the float values."""
    b = np.int64(bits)
    return b ^ _FLIP if b < 0 else b


@jit
def gather_keys(src, r0, r1, gain, offset, normalise, scaling, fw, pw, n_pw_ch, radial, n_ch, pairs, keys, wf,
                n_valid, s, idx, centre, sums):
    """Weighted, normalised samples of rows ``[r0, r1)`` as sortable keys, pixel-major.

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32 or uint16, C-contiguous
        The frames (``Q = W·C``, channels interleaved); uint16: 16-bit FITS samples
        as stored (:mod:`.stored`).
    r0, r1 : int
        Rows of ``src`` to gather.
    gain, offset : ndarray, shape (N, Q), float32
        Normalisation ``f32(f32(x·gain) + offset)``; read only when ``normalise``.
    normalise : bool
        Whether to normalise.
    scaling : ndarray, shape (N, 2) or (0, 2), float32
        ``(BSCALE, BZERO)`` of stored frames (:data:`~.stored.NO_SCALING` for float32).
    fw : ndarray, shape (N, Q) or (N, 0), float32
        Frame weights repeated along the row; empty: none.
    pw : ndarray, shape (N, r1 − r0, W·n_pw_ch) or (N, 0, 0), float32
        Per-pixel weights of the band's rows; empty: none.
    n_pw_ch : int
        Channels of ``pw``: ``C``, or 1 for one weight for every channel.
    radial : ndarray, shape (r1 − r0, W) or (0, 0), float32
        Radial weights of the band's rows; empty: none.
    n_ch : int
        Channels ``C`` of the frames.
    pairs : ndarray, shape (P, 2), int64
        Sorting network of N, or shape (0, 2): the keys are left unsorted in ``keys``
        (the caller sorts and unpacks them).
    keys : ndarray, shape ((r1 − r0)·Q, N), int64 (output, without a network)
        Per row ``(i − r0)·Q + q``: ``ordered(bits(value)) << 32 | frame``, the
        value ``+inf`` for invalid samples.
    wf : ndarray, shape ((r1 − r0)·Q, N), float32 (output)
        Each sample's weight in frame order, 0 for invalid samples.
    n_valid : ndarray, shape ((r1 − r0)·Q,), int64 (output)
        Valid samples per row: raw value finite, normalised value not NaN, weight
        finite and ``> 0``.
    s, idx : ndarray, shape ((r1 − r0)·Q, N), float32 and int32 (outputs, with a network)
        The sorted rows and the frame of each position (:func:`unpack_keys`).
    centre, sums : ndarray, shape ((r1 − r0)·Q,) and ((r1 − r0)·Q, 2) (outputs, with a network)
        Each row's median and ``Σd``, ``Σd²`` about it, as the unweighted gather
        (:func:`~.common.median_sums_lanes`): the start of the κ-σ and WSC kernels.

    Returns
    -------
    bool
        A valid sample is infinite (a normalisation overflow, or an infinite value
        of a samples-last source): ``centre`` and ``sums`` are then not usable.
    """
    n = src.shape[0]
    return _gather_rows(src, r0, r1, gain, offset, normalise, scaling, fw, pw, n_pw_ch, radial, n_ch, pairs, keys,
                        wf, n_valid, s, idx, centre, sums, np.empty((n, LANES), np.int64),
                        np.empty((n, LANES), np.float32), np.empty(LANES, np.float32), np.zeros(LANES, np.int64),
                        np.empty(LANES, np.float32), np.empty(LANES, np.float64), np.empty(LANES, np.float64),
                        np.empty(LANES, np.float64),
                        np.empty((n if scaling.shape[0] else 0, 1, src.shape[2]), np.float32))


@jit
def _gather_rows(src, r0, r1, gain, offset, normalise, scaling, fw, pw, n_pw_ch, radial, n_ch, pairs, keys, wf,
                 n_valid, s, idx, centre, sums, block, fblock, vals, count, med32, med, acc1, acc2, rowbuf):
    """The loop of :func:`gather_keys`, with its scratch (``block`` … ``acc2``, ``rowbuf``) as arguments.

    Arguments, so that the arrays its inlined helpers take at every block of 32
    pixels can be :func:`~.common.borrowed` (no reference counts): the caller keeps
    them alive.
    """
    keys, wf, n_valid, s, idx, centre, sums = (borrowed(keys), borrowed(wf), borrowed(n_valid), borrowed(s),
                                               borrowed(idx), borrowed(centre), borrowed(sums))
    block, fblock, vals, count = borrowed(block), borrowed(fblock), borrowed(vals), borrowed(count)
    med32, med, acc1, acc2 = borrowed(med32), borrowed(med), borrowed(acc1), borrowed(acc2)
    rowbuf = borrowed(rowbuf)  # stored frames' decoded rows, sliced at every block
    n, _, q = src.shape
    inf = np.float32(np.inf)
    one = np.float32(1.0)
    has_fw = fw.shape[1] > 0
    has_pw = pw.shape[2] > 0
    has_rad = radial.shape[1] > 0
    fbits = fblock.view(np.int32)
    bits = vals.view(np.int32)
    overflow = False
    pad = (_ordered(np.int32(0x7F800000)) << 32) | np.int64(n)
    for i in range(r0, r1):
        frames, fi = frame_rows(src, i, scaling, rowbuf)
        for j0 in range(0, q, LANES):
            m = min(LANES, q - j0)
            base = (i - r0) * q + j0
            for lane in range(LANES):
                count[lane] = 0
            for k in range(n):
                for lane in range(m):
                    j = j0 + lane
                    v = frames[k, fi, j]
                    y = np.float32(np.float32(v * gain[k, j]) + offset[k, j]) if normalise else v
                    w = fw[k, j] if has_fw else one
                    if has_pw:
                        w = np.float32(w * pw[k, i - r0, j if n_pw_ch > 1 else j // n_ch])
                    if has_rad:
                        w = np.float32(w * radial[i - r0, j // n_ch])
                    ok = ((v - v) == 0) & (y == y) & ((w - w) == 0) & (w > 0)
                    overflow |= ok & ((y - y) != 0)
                    wf[base + lane, k] = w if ok else np.float32(0.0)
                    count[lane] += ok
                    vals[lane] = y if ok else inf
                _pack_frame(block, k, bits, m, pad)
            _finish_lanes(block, fblock, fbits, count, n_valid, pairs, keys, s, idx, centre, sums, base, m, med32, med,
                          acc1, acc2)
    return overflow


@inline
def _pack_frame(block, k, bits, m, pad):
    """Frame ``k``'s lane values (their float32 ``bits``) as keys ``ordered(bits) << 32 | k``; padding lanes ``pad``."""
    for lane in range(m):
        block[k, lane] = (_ordered(bits[lane]) << 32) | np.int64(k)
    for lane in range(m, block.shape[1]):
        block[k, lane] = pad


@inline
def _finish_lanes(block, fblock, fbits, count, n_valid, pairs, keys, s, idx, centre, sums, base, m, med32, med, acc1,
                  acc2):
    """Store a gathered block's ``m`` lanes at rows ``base…``: counts, then sorted rows or raw keys.

    With a network: sorted, decoded into ``s`` and ``idx``, with each row's median and
    sums (:func:`~.common.median_sums_lanes`); without: the unsorted keys into ``keys``.
    """
    n = block.shape[0]
    for lane in range(m):
        n_valid[base + lane] = count[lane]
    if pairs.shape[0]:
        network(block, pairs)
        _decode(block, fblock, fbits, s, idx, base, m)
        median_sums_lanes(fblock, count, centre, sums, base, m, med32, med, acc1, acc2)
    else:
        for lane in range(m):
            for k in range(n):
                keys[base + lane, k] = block[k, lane]


@inline
def _decode(block, fblock, fbits, s, idx, base, m):
    """Split sorted keys into their values (``fblock``, via its int32 view ``fbits``) and rows of ``s``, ``idx``."""
    n, lanes = block.shape
    for k in range(n):
        for lane in range(lanes):
            b = block[k, lane] >> 32
            fbits[k, lane] = np.int32(b ^ _FLIP if b < 0 else b)
    for lane in range(m):
        for k in range(n):
            s[base + lane, k] = fblock[k, lane]
            idx[base + lane, k] = np.int32(block[k, lane] & _LOW)


@jit
def gather_key_rows(x, n_ch, gain, offset, normalise, fw, pw, n_pw_ch, pairs, keys, wf, n_valid, s, idx, centre,
                    sums):
    """:func:`gather_keys` for a block already in the samples-last layout (grid cells).

    Parameters
    ----------
    x : ndarray, shape (P, N), float32, C-contiguous
        ``P = h·w·C`` pixel rows (channels fastest), NaN = no data (an infinite value
        is a valid sample here, as in the core's ``Samples``).
    n_ch : int
        Channels ``C``.
    gain, offset : ndarray, shape (N, C) or (N, 0), float32
        Normalisation, read only when ``normalise``.
    normalise : bool
        Whether to normalise.
    fw : ndarray, shape (N, C) or (N, 0), float32
        Frame weights; empty: none.
    pw : ndarray, shape (P / C · n_pw_ch, N) or (0, N), float32
        Per-pixel weights (``n_pw_ch`` 1: one for every channel); empty: none.
    n_pw_ch : int
        Channels of ``pw``.
    pairs : ndarray, shape (P, 2), int64
        Sorting network of N, or shape (0, 2).
    keys, wf, n_valid, s, idx, centre, sums : ndarray
        Outputs, as :func:`gather_keys`.

    Returns
    -------
    bool
        A valid sample is infinite: ``centre`` and ``sums`` are not usable.
    """
    rows, n = x.shape
    inf = np.float32(np.inf)
    one = np.float32(1.0)
    has_fw = fw.shape[1] > 0
    has_pw = pw.shape[0] > 0
    block = np.empty((n, LANES), np.int64)
    fblock = np.empty((n, LANES), np.float32)
    fbits = fblock.view(np.int32)
    vals = np.empty(LANES, np.float32)
    bits = vals.view(np.int32)
    count = np.zeros(LANES, np.int64)
    med32 = np.empty(LANES, np.float32)
    med = np.empty(LANES, np.float64)
    acc1 = np.empty(LANES, np.float64)
    acc2 = np.empty(LANES, np.float64)
    overflow = False
    pad = (_ordered(np.int32(0x7F800000)) << 32) | np.int64(n)
    for p0 in range(0, rows, LANES):
        m = min(LANES, rows - p0)
        for lane in range(LANES):
            count[lane] = 0
        for k in range(n):
            for lane in range(m):
                p = p0 + lane
                ch = p % n_ch
                v = x[p, k]
                y = np.float32(np.float32(v * gain[k, ch]) + offset[k, ch]) if normalise else v
                w = fw[k, ch] if has_fw else one
                if has_pw:
                    w = np.float32(w * pw[p if n_pw_ch > 1 else p // n_ch, k])
                ok = (y == y) & ((w - w) == 0) & (w > 0)
                overflow |= ok & ((y - y) != 0)
                wf[p, k] = w if ok else np.float32(0.0)
                count[lane] += ok
                vals[lane] = y if ok else inf
            _pack_frame(block, k, bits, m, pad)
        _finish_lanes(block, fblock, fbits, count, n_valid, pairs, keys, s, idx, centre, sums, p0, m, med32, med,
                      acc1, acc2)
    return overflow


@jit
def unpack_keys(keys, s_bits, idx):
    """Split sorted keys into the sorted values (their bits) and their frame indices.

    Parameters
    ----------
    keys : ndarray, shape (P, N), int64
        Rows of :func:`gather_keys`, sorted.
    s_bits : ndarray, shape (P, N), int32 (output)
        The int32 view of the float32 sorted rows ``s``.
    idx : ndarray, shape (P, N), int32 (output)
        Frame of each sorted position.
    """
    rows, n = keys.shape
    for p in range(rows):
        for j in range(n):
            key = keys[p, j]
            b = key >> 32
            if b < 0:
                b ^= _FLIP
            s_bits[p, j] = np.int32(b)
            idx[p, j] = np.int32(key & _LOW)


@jit
def combine_weighted(s, idx, wf, n_valid, combine, lo, hi, iterations, split, keep, winsor,
                     image, weight_sum, coverage, n_low, n_high, counters, uncertainty, se_mode, se_factor):
    """Combine each pixel's kept samples with their weights, as ``core.combine`` and ``core.uncertainty``.

    Parameters
    ----------
    s : ndarray, shape (P, N), float32
        Sorted rows (:func:`unpack_keys`), invalid last as ``+inf``.
    idx : ndarray, shape (P, N), int32
        Frame of each sorted position.
    wf : ndarray, shape (P, N), float32
        Weights in frame order, 0 for invalid samples.
    n_valid : ndarray, shape (P,), int64
        Valid samples per row.
    combine : int
        :data:`~.combine.COMBINE_CODES`.
    lo, hi, iterations, split, keep, winsor : ndarray
        What the rejection kernel found (:class:`~.band.Kept`).
    image, weight_sum : ndarray, shape (P,), float32 (outputs)
        Combined value (NaN where no sample survived) and Σ weights of the survivors.
    coverage, n_low, n_high : ndarray, shape (P,), int32 (outputs)
        Survivors, and samples rejected below / above.
    counters : ndarray, shape (4,), int64 (output)
        Max iterations, Σ n_valid, Σ n_low, Σ n_high over the band.
    uncertainty : ndarray, shape (P,) or (0,), float32 (output)
        Standard error of each pixel (NaN below two survivors, without an estimator
        or without a degree of freedom); empty: not computed.
    se_mode : int
        :data:`~.combine.UNCERTAINTY_CODES` of the combine, 0 for none.
    se_factor : float
        The clip correction of the mean's estimator.

    Notes
    -----
    The mean is ``f32(Σ f64(f32(w·x)) / Σ f64(w))``, both sums NumPy's pairwise sums
    over the frames with zeros for the others; the sum is ``f32(f32(count)·mean)``;
    median, min and max are unweighted, as in the core.
    """
    n = s.shape[1]
    # The block's values and weights by frame (rows 16 float32 / 8 float64 longer than
    # the block: an odd number of cache lines apart, so a row's frames fall in different
    # L1 sets; a power of two apart, the copies cost ~19 ns a pixel more at N = 8).
    by_frame = n if n < _LANES_ARE_ROWS_BELOW else 0
    _combine_rows(s, idx, wf, n_valid, combine, lo, hi, iterations, split, keep, winsor, image, weight_sum,
                  coverage, n_low, n_high, counters, uncertainty, se_mode, se_factor, np.empty((1, n), np.float32),
                  np.empty(n), np.empty(n), np.empty((64, 3), np.int64), np.empty(64), np.zeros(n, np.float32),
                  np.zeros((by_frame, _SE_BLOCK + 16), np.float32), np.zeros((by_frame, _SE_BLOCK + 8)),
                  np.zeros(_SE_BLOCK, np.float32), np.zeros((5, _SE_BLOCK)))


@jit
def _combine_rows(s, idx, wf, n_valid, combine, lo, hi, iterations, split, keep, winsor, image, weight_sum, coverage,
                  n_low, n_high, counters, uncertainty, se_mode, se_factor, t, num, den, frames, values, kept_v,
                  block_v, block_w, centre, acc):
    """The loop of :func:`combine_weighted`, with its scratch (``t`` … ``acc``) as arguments.

    Arguments, so that the arrays the inlined helpers of every pixel read can be
    :func:`~.common.borrowed` (no reference counts): the caller keeps them alive.
    ``kept_v`` (N,) holds a row's kept values by frame; ``acc`` (5, B) the error sums
    of the block of rows whose standard errors wait (:func:`_weighted_errors`), or,
    with ``block_v``, ``block_w`` (N, ≥ B; (0, ·): not used) and ``centre`` (B,), their
    values, weights (0: not kept) and centres until :func:`_weighted_sums`.
    """
    s, idx, wf, t, num, den = borrowed(s), borrowed(idx), borrowed(wf), borrowed(t), borrowed(num), borrowed(den)
    kept_v, block_v, block_w = borrowed(kept_v), borrowed(block_v), borrowed(block_w)
    centre, acc = borrowed(centre), borrowed(acc)
    by_rows = block_v.shape[0] > 0
    rows, n = s.shape
    nan = np.float32(np.nan)
    has_split = split.shape[0] > 0
    rewinsor = winsor.shape[0] > 0
    has_se = uncertainty.shape[0] > 0 and se_mode > 0
    p0 = 0  # first row of the block whose error sums wait in acc
    max_it = 0
    total_valid = 0
    total_low = 0
    total_high = 0
    for p in range(rows):
        nv = n_valid[p]
        a = lo[p]
        b = hi[p]
        if iterations[p] > max_it:
            max_it = iterations[p]
        split_row = has_split and split[p]
        q_lo = winsor[p, 0] if rewinsor else np.float32(0.0)
        q_hi = winsor[p, 1] if rewinsor else np.float32(0.0)
        # Sorted positions that may be kept: the range, or every valid one.
        j0 = 0 if (rewinsor or split_row) else a
        j1 = nv if (rewinsor or split_row) else b
        i = p - p0 if has_se else 0  # the row in the block of errors
        for k in range(n):
            num[k] = 0.0
            den[k] = 0.0
        count = 0
        for j in range(j0, j1):
            f = idx[p, j]
            w = wf[p, f]
            if w > 0 and not (split_row and not keep[p, j]):
                v = s[p, j]
                if rewinsor and not a <= j < b:
                    v = clamp(v, q_lo, q_hi)
                num[f] = np.float64(np.float32(w * v))
                den[f] = np.float64(w)
                kept_v[f] = v
                count += 1
        if has_se and count >= 2:
            # The error's sums about a sample near the mean known now, not the combined
            # value: they then do not wait for the combine's sums and division below.
            c = s[p, (j0 + j1 - 1) // 2]
            if by_rows:
                centre[i] = c
                for k in range(n):
                    block_v[k, i] = kept_v[k]
                    block_w[k, i] = den[k]
            else:
                sums = _row_sums(kept_v, den, c, se_mode)
                for j in range(5):
                    acc[j, i] = sums[j]
        elif has_se and by_rows:
            for k in range(n):
                block_w[k, i] = 0.0
        # Up to 128 frames without pairwise_sum's scratch: numba would count the
        # references of its three arrays, atomically, twice a pixel (~5 % of a stack).
        big_w = pairwise_sum_short(den, n) if n <= 128 else pairwise_sum(den, n, frames, values)
        value = nan
        if count > 0:
            if combine in (1, 3, 4):
                # The sorted kept values, for the median, min and max: a range of s or a copy
                # in t (two calls, not one on a chosen array: see combine._copy_kept).
                if rewinsor or split_row:
                    _copy_kept(s, p, a, b, nv, split_row, keep, rewinsor, q_lo, q_hi, t)
                    value = _order_value(t, 0, 0, count, combine)
                else:
                    value = _order_value(s, p, a, count, combine)
            else:
                total = pairwise_sum_short(num, n) if n <= 128 else pairwise_sum(num, n, frames, values)
                mean = np.float32(total / (big_w if big_w > 0 else 1.0))
                value = mean if combine == 0 else np.float32(np.float32(count) * mean)
        image[p] = value
        weight_sum[p] = np.float32(big_w)
        coverage[p] = count
        n_low[p] = a
        n_high[p] = nv - b
        total_valid += nv
        total_low += a
        total_high += nv - b
        if has_se:
            # The sums, divisions and square roots a block of rows at a time.
            if i == _SE_BLOCK - 1 or p == rows - 1:
                if by_rows:
                    _weighted_sums(block_v, block_w, centre, i + 1, se_mode, acc)
                _weighted_errors(acc, coverage, p0, i + 1, uncertainty, se_mode, se_factor)
                p0 = p + 1
        elif uncertainty.shape[0] > 0:
            uncertainty[p] = nan  # no estimator for this combine
    counters[0] = max_it
    counters[1] = total_valid
    counters[2] = total_low
    counters[3] = total_high


@jit(fastmath=REASSOCIATE)
def _row_sums(kept_v, den, centre, mode):
    """The float64 sums of one row's standard error (two or more kept, ``mode`` 1–3), in frame order.

    ``kept_v`` (N,) float32: the kept values (re-winsorised where the rejection says
    so), ``den`` (N,) float64: their weights, 0 for a frame not kept (its value is then
    ignored, whatever it holds). About ``centre``, as :func:`_weighted_sums`, which
    this is for one row, its frames as the vector lanes (sums in any order: compiled
    with reassociation).
    """
    c = np.float64(centre if (centre - centre) == 0 else np.float32(0.0))
    big_w = 0.0
    swd = 0.0
    sw2 = 0.0
    sw2d = 0.0
    sw2d2 = 0.0
    if mode == 3:
        for f in range(kept_v.shape[0]):
            d = np.float64(kept_v[f]) - c
            d = d if den[f] > 0 else 0.0
            swd += d
            sw2d2 += d * d
    else:
        for f in range(kept_v.shape[0]):
            w = den[f]
            d = np.float64(kept_v[f]) - c
            d = d if w > 0 else 0.0
            w2 = w * w
            big_w += w
            swd += w * d
            sw2 += w2
            sw2d += w2 * d
            sw2d2 += w2 * d * d
    return big_w, swd, sw2, sw2d, sw2d2


@jit
def _weighted_sums(kept_v, kept_w, centre, m, mode, acc):
    """The float64 sums of the standard errors of a block of ``m`` rows, into ``acc[:, :m]``.

    ``kept_v`` (N, B) float32: each row's kept values (re-winsorised where the rejection
    says so) by frame, ``kept_w`` (N, B) float64: their weights, 0 for a frame not kept
    (its value is then ignored, whatever it holds). Shifted by ``centre`` (B,) float32,
    0 where not finite: a value among the row's samples, ``d = x − c`` (the core shifts
    by the combined value; about a centre within the samples' spread the estimator is
    the same up to float64 rounding). ``acc`` rows: ``W, Σ w·d, Σ w², Σ w²d, Σ w²d²``
    (weighted: mean, sum), or ``0, Σd, 0, 0, Σd²`` (median: unweighted), for
    :func:`_weighted_errors`. Each row adds in frame order; the rows are the vector
    lanes (rows of 8 frames summed one at a time cost ~30 ns each, in the combine
    loop: the sums of 8 terms do not fill a vector and wait for the row's mean).
    """
    for i in range(m):
        c = centre[i]
        centre[i] = c if (c - c) == 0 else np.float32(0.0)
        for j in range(5):
            acc[j, i] = 0.0
    for f in range(kept_v.shape[0]):
        for i in range(m):
            w = kept_w[f, i]
            d = np.float64(kept_v[f, i]) - np.float64(centre[i])
            d = d if w > 0 else 0.0
            if mode == 3:
                acc[1, i] += d
                acc[4, i] += d * d
            else:
                w2 = w * w
                acc[0, i] += w
                acc[1, i] += w * d
                acc[2, i] += w2
                acc[3, i] += w2 * d
                acc[4, i] += w2 * d * d


@jit
def _weighted_errors(acc, coverage, p0, m, uncertainty, mode, factor):
    """``uncertainty[p0:p0 + m]`` from the sums of :func:`_weighted_sums` in ``acc[:, :m]``.

    ``core.uncertainty.standard_error``: weighted (mean, sum), with ``μ = Σ w·d / W``,
    ``Σ w²(d − μ)² = Σ w²d² − 2μ Σ w²d + μ² Σ w²`` (the shift is a sample near the
    mean: ``μ`` is within the samples' spread, so little cancels) over ``W² − Σ w²``; median: the unweighted estimator
    (:func:`~.combine._from_sums`). NaN below two survivors (whatever ``acc`` holds
    there) or without a degree of freedom. In a pass of their own the rows are
    independent: LLVM vectorises the divisions and square roots over them (after each
    pixel's sums, in the combine loop, they were a dependent chain: ~40 ns a pixel).
    """
    nan = np.float32(np.nan)
    for i in range(m):
        count = coverage[p0 + i]
        if mode == 3:
            se = _from_sums(acc[1, i], acc[4, i], count, mode, factor)
        else:
            big_w = acc[0, i]
            sw2 = acc[2, i]
            mu = acc[1, i] / (big_w if big_w > 0 else 1.0)
            ss = acc[4, i] - 2.0 * mu * acc[3, i] + mu * mu * sw2
            ss = ss if ss > 0 else 0.0
            dof = big_w * big_w - sw2
            var = ss / dof * factor
            if mode == 2:
                nf = np.float64(count)
                var = var * nf * nf
            se = np.float32(np.sqrt(var)) if dof > 0 else nan
        uncertainty[p0 + i] = se if count >= 2 else nan
