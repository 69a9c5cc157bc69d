"""Stack-core ops for NumPy: SIMD sorts, einsum sums, cache-sized threaded bands, numba.

Each method returns what the portable method of
:class:`~zemosaic_xp.core.ops.ArrayOps` returns on the same data
(``tests/backends/test_ops_parity.py`` and ``tests/backends/test_numba_kernels.py``
compare them). What NumPy gains (figures and how they were taken in
``docs/performance.md``):

- NumPy alone: its SIMD quicksort in place on the NaN → +inf copy, NaN counted only
  in rows that end in +inf, ``einsum`` row sums (faster than ``sum`` along a short
  contiguous axis), the MAD by sorting the deviations, bands transposed with
  ``copyto`` into a fresh buffer, compaction of the still-active pixels, and one band
  thread per core (NumPy releases the GIL);
- with numba (optional, ``pip install zemosaic-xp[fast]``; off with
  ``ZEMOSAIC_XP_NUMBA=0``): unweighted stacks, whatever their rejection and combine,
  go band by band through compiled kernels, from the frames straight into the
  results (:meth:`NumpyOps.band_stacker`); elsewhere κ-σ and both WSC
  flavours run as one compiled loop per pixel over the sorted rows instead of dozens
  of vector passes per iteration, and short rows are sorted by a sorting network
  (:mod:`zemosaic_xp.backends.numba`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from ..core.nanstats import median_sorted
from ..core.ops import ArrayOps
from .numba import numba_enabled, numba_kernels
from .select_numpy import median_of_rows, split_kernel

__all__ = ["NumpyOps", "CpuOps", "cpu_workers", "CPU_BAND_BYTES"]

Array = Any

#: Float32 bytes of one CPU band: small enough to stay in the L2/L3 caches through
#: the dozen passes of a rejection (docs/performance.md).
CPU_BAND_BYTES = 2 * 1024**2
_MAX_BAND_WORKERS = 8

# Up to this many samples per pixel a sorting network (32 rows at a time, vector
# min/max) beats NumPy's sort, whose cost per row hardly depends on its length
# (docs/performance.md, "Kernel measurements").
_NETWORK_MAX_N = 48
# Rows at least this long take their median by selection (NumpyOps.median_valid).
_SELECT_MIN_N = 1024
_NO_PAIRS = np.zeros((0, 2), dtype=np.int64)


# The band path's limit (``_numba_stack_band``): there the network also replaces the
# counting, median and sums pass. It beats NumPy's sort of the gathered rows up to
# N = 48 with AVX2 (AMD EPYC, ns a row: N = 32 144 against 183, N = 48 131 against 182;
# docs/performance.md "Stop 30") and with AVX-512 (AMD EPYC, stop 35: a 48 × 2048² master
# tile's bands 0.55 against 0.94–1.17 CPU s for the median, 1.79 against 2.24 for the
# WSC). Same results either way.
_BAND_NETWORK_MAX_N = _NETWORK_MAX_N


def cpu_workers() -> int:
    """CPU cores this process may use (affinity-aware), capped at 8.

    Returns
    -------
    int
        At least 1.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, min(_MAX_BAND_WORKERS, count))


# ---------------------------------------------------------------------------- NumPy primitives
def _sort_valid_numpy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of ``ArrayOps.sort_valid`` (see its docstring): SIMD sort, or numba's network.

    numba only for rows short enough for its sorting network: longer rows (frame
    samples, thousands long) are sorted by NumPy either way, and loading numba and its
    kernels for them would cost a process that stacks nothing (the grid runner with
    worker processes) ~0.5 s and ~60 MB. Same values and counts on both paths.
    """
    n = x.shape[-1]
    kernels = numba_kernels() if x.dtype == np.float32 and 0 < n <= _NETWORK_MAX_N else None
    if kernels is not None:
        return _numba_sort_valid(kernels, x)
    nan = np.isnan(x)
    # The where() copy is the buffer we sort in place with NumPy's unstable SIMD sort.
    s = np.where(nan, np.float32(np.inf) if x.dtype == np.float32 else np.inf, x)
    s.sort(axis=-1)
    flat = s.reshape(-1, n)
    n_valid = np.full((flat.shape[0], 1), n, dtype=np.int64)
    # Only rows that end in +inf can hold NaN: count those rows alone.
    rows = np.flatnonzero(flat[:, -1] == np.inf)
    if rows.size:
        n_valid[rows, 0] = n - np.count_nonzero(nan.reshape(-1, n)[rows], axis=-1)
    return s, n_valid.reshape(x.shape[:-1] + (1,))


def _centred_sums_numpy(s: np.ndarray, centre: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                        whole: bool) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of ``ArrayOps.centred_sums`` (see its docstring): float64 einsum row sums."""
    n = s.shape[-1]
    d = s.astype(np.float64)
    d -= centre.astype(np.float64)[:, None]
    if whole:
        # The whole valid range: outside it there is only the +inf padding, and an
        # isinf pass on float32 is cheaper than comparing indices per row.
        if (hi != n).any():
            np.copyto(d, 0.0, where=np.isinf(s))
    elif lo.any() or (hi != n).any():
        j = np.arange(n)
        np.copyto(d, 0.0, where=(j < lo[:, None]) | (j >= hi[:, None]))
    # einsum reduces a short contiguous axis faster than ndarray.sum.
    return np.einsum("ij->i", d), np.einsum("ij,ij->i", d, d)


# ---------------------------------------------------------------------------- numba calls
@functools.lru_cache(maxsize=None)
def _network_pairs(n: int) -> np.ndarray:
    pairs = numba_kernels().merge_network(n)
    pairs.flags.writeable = False
    return pairs


def _numba_sort_valid(kernels: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_sort_valid_numpy` with the NaN → +inf copy and the counts in one numba pass."""
    n = x.shape[-1]
    flat = np.ascontiguousarray(x).reshape(-1, n)
    s = np.empty_like(flat)
    n_valid = np.empty(flat.shape[0], dtype=np.int64)
    kernels.sort_network_rows(flat, _network_pairs(n), s, n_valid)  # n <= _NETWORK_MAX_N
    return s.reshape(x.shape), n_valid.reshape(x.shape[:-1] + (1,))


def _range_outputs(rows: int) -> tuple[np.ndarray, ...]:
    """Empty ``lo, hi, iterations, centre, kept_sum`` for a range kernel."""
    return (np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int64),
            np.empty(rows, np.float32), np.empty(rows, np.float64))


def _counts(n_valid: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(n_valid, dtype=np.int64).reshape(-1)


def _range_kernel(kernel: str, s: np.ndarray, n_valid: np.ndarray, *args: Any) -> tuple[np.ndarray, ...] | None:
    """Run the range kernel ``kernel`` on float32 sorted rows; None without numba or float32."""
    kernels = numba_kernels()
    if kernels is None or s.dtype != np.float32:
        return None
    out = _range_outputs(s.shape[0])
    getattr(kernels, kernel)(np.ascontiguousarray(s), _counts(n_valid), *args, *out, kernels.NO_SUMS)
    return out


def _numba_stack_band(frames: Array, r0: int, r1: int, out: tuple, *, config: Any, plan: Any,
                      row_start: int | None = None, full_height: int | None = None,
                      pixel_weights: Array | None = None,
                      scaling: Array | None = None) -> tuple[int, int, int, int]:
    """One band through the numba band kernels (:meth:`NumpyOps.band_stacker`)."""
    src = np.asarray(frames)
    row_start = r0 if row_start is None else row_start
    full_height = int(src.shape[1]) if full_height is None else full_height
    if scaling is None and (src.dtype != np.float32 or not src.flags.c_contiguous):
        # The kernels read C-ordered float32 (or stored 16-bit frames, with `scaling`):
        # convert just this band, as band_copy would.
        src = np.ascontiguousarray(src[:, r0:r1], dtype=np.float32)
        r0, r1 = 0, r1 - r0
    n = int(src.shape[0])
    pairs = _network_pairs(n) if n <= _BAND_NETWORK_MAX_N else _NO_PAIRS
    return numba_kernels().stack_band(src, r0, r1, pairs, config, plan, out, row_start=row_start,
                                      full_height=full_height, pixel_weights=pixel_weights, scaling=scaling)


def _numba_stack_block(values: Array, weights: Array | None, plan: Any, out: tuple, *,
                       config: Any) -> tuple[int, int, int, int]:
    """One samples-last block through the numba kernels (:meth:`NumpyOps.block_stacker`)."""
    n = int(values.shape[-1])
    pairs = _network_pairs(n) if n <= _BAND_NETWORK_MAX_N else _NO_PAIRS
    return numba_kernels().stack_block(np.asarray(values), None if weights is None else np.asarray(weights),
                                       pairs, config, plan, out)


# ---------------------------------------------------------------------------- the ops
class CpuOps(ArrayOps):
    """The CPU strategy: compaction, a convergence check per iteration, cache-sized bands.

    Compacting the still-active pixels and testing convergence cost a CPU nothing
    worth avoiding, and small bands stay in its caches; one band thread per core.

    Parameters
    ----------
    xp : module
        The array-API namespace.
    """

    compact = True
    check_every = 1
    band_bytes = CPU_BAND_BYTES

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        self.band_workers = cpu_workers()


class NumpyOps(CpuOps):
    """NumPy: in-place SIMD sort, einsum row sums, compaction, cache-sized threaded bands.

    With numba installed (and ``ZEMOSAIC_XP_NUMBA`` not ``0``): whole bands through
    compiled kernels where the configuration allows (:meth:`band_stacker`), κ-σ and
    the winsorised sigma clips as compiled per-pixel loops elsewhere, and a sorting
    network for rows of up to 48 samples; ``name`` is then ``"numpy+numba"``.

    Built as ``NumpyOps(xp)`` with the NumPy array-API namespace (:class:`CpuOps`).
    Every method takes and returns NumPy arrays (host memory).
    """

    @property
    def name(self) -> str:  # type: ignore[override]
        """Name shown in ``StackResult.stats["ops"]``.

        Returns
        -------
        str
            ``"numpy+numba"`` when the numba kernels are enabled, else ``"numpy"``.
        """
        return "numpy+numba" if numba_enabled() else "numpy"

    def band_stacker(self, config: Any, plan: Any, *, pixel_weights: bool = False, stored: bool = False) -> Any:
        """Return the numba whole-band stacker for this configuration, or None.

        Parameters
        ----------
        config : StackConfig
            The stack's methods and parameters.
        plan : FramePlan
            Its normalisation gains and offsets and weights.
        pixel_weights : bool
            Whether the bands also come with per-pixel weights.
        stored : bool
            Whether the stacker must also read stored 16-bit frames (``scaling=``,
            :mod:`zemosaic_xp.backends.numba.stored`): every band kernel does.

        Returns
        -------
        callable or None
            ``stacker(frames, r0, r1, out)`` as :meth:`ArrayOps.band_stacker`
            specifies, running the numba band kernels; None without numba or for a
            configuration they do not implement
            (:func:`zemosaic_xp.backends.numba.band.supports`): the core's pipeline
            runs.
        """
        kernels = numba_kernels()
        if kernels is None or not kernels.supports(config, plan, pixel_weights):
            return None
        return functools.partial(_numba_stack_band, config=config, plan=plan)

    def block_stacker(self, config: Any, plan: Any) -> Any:
        """Return the numba stacker of samples-last weighted blocks (grid cells), or None.

        Parameters
        ----------
        config : StackConfig
            The stack's methods and parameters.
        plan : FramePlan
            The plan of the source's frames.

        Returns
        -------
        callable or None
            ``stacker(values, weights, plan, out)`` as :meth:`ArrayOps.block_stacker`
            specifies (:func:`zemosaic_xp.backends.numba.band.stack_block`); None
            without numba, with a radial weight, or for a configuration the kernels do
            not implement.
        """
        kernels = numba_kernels()
        if kernels is None or config.radial_weight or not kernels.supports(config, plan, True):
            return None
        return functools.partial(_numba_stack_block, config=config)

    def kappa_sigma_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                        max_iters: int, ddof: int, min_survivors: int) -> tuple[Array, ...] | None:
        """Run the median-centred κ-σ clip of sorted rows as one numba loop per row.

        Parameters
        ----------
        s : ndarray, shape (R, N), float32
            Rows sorted ascending, invalid samples last as ``+inf``.
        n_valid : ndarray, shape (R,), int64
            Valid samples per row.
        kappa_low, kappa_high : float
            Rejection thresholds below and above the median, in σ.
        max_iters, ddof, min_survivors : int
            As :func:`~zemosaic_xp.core.reject.kappa_sigma.kappa_sigma_fit`.

        Returns
        -------
        tuple of ndarray or None
            ``(lo, hi, iterations, centre, kept_sum)`` as :meth:`ArrayOps.kappa_sigma_fit`
            specifies; None without numba or for rows that are not float32 (the
            portable code runs).
        """
        # κ as float32: the core forms the bounds c ± κ·σ in float32 (NumPy's weak scalars).
        return _range_kernel("kappa_sigma_rows", s, n_valid, np.float32(kappa_low), np.float32(kappa_high),
                             ddof, max_iters, min_survivors)

    def wsc_pixinsight_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float,
                           kappa_high: float, max_iters: int,
                           min_survivors: int) -> tuple[Array, ...] | None:
        """Run the PixInsight/Siril winsorised sigma clip of sorted rows as a numba loop per row.

        Parameters
        ----------
        s : ndarray, shape (R, N), float32
            Rows sorted ascending, invalid samples last as ``+inf``.
        n_valid : ndarray, shape (R,), int64
            Valid samples per row.
        kappa_low, kappa_high : float
            Rejection thresholds, in σ.
        max_iters, min_survivors : int
            As :func:`~zemosaic_xp.core.reject.winsorized_sigma_clip.wsc_pixinsight_fit`.

        Returns
        -------
        tuple of ndarray or None
            ``(lo, hi, iterations, centre, kept_sum)`` as
            :meth:`ArrayOps.wsc_pixinsight_fit` specifies; None without numba or for
            rows that are not float32.
        """
        return _range_kernel("wsc_pixinsight_rows", s, n_valid, float(kappa_low), float(kappa_high),
                             max_iters, min_survivors)

    def wsc_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                max_iters: int, min_survivors: int) -> tuple[Array, ...] | None:
        """Run ZeMosaic's unweighted Huber WSC of sorted rows as a numba loop per row.

        Parameters
        ----------
        s : ndarray, shape (R, N), float32
            Rows sorted ascending, invalid samples last as ``+inf``.
        n_valid : ndarray, shape (R,), int64
            Valid samples per row.
        kappa_low, kappa_high : float
            Clamp and rejection thresholds, in σ.
        max_iters, min_survivors : int
            As :mod:`~zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic`.

        Returns
        -------
        tuple of ndarray or None
            ``(lo, hi, iterations, centre, kept_sum)`` as :meth:`ArrayOps.wsc_fit`
            specifies; None without numba or for rows that are not float32.
        """
        return _range_kernel("wsc_rows", s, n_valid, float(kappa_low), float(kappa_high), max_iters,
                             min_survivors)

    def wsc_weighted_fit(self, x: Array, weights: Array, s: Array, n_valid: Array, /, *,
                         kappa_low: float, kappa_high: float, max_iters: int,
                         min_survivors: int) -> tuple[Array, ...] | None:
        """Run ZeMosaic's weighted Huber WSC as a numba loop per row.

        Parameters
        ----------
        x : ndarray, shape (R, N), float32
            Samples in their original order, NaN where invalid.
        weights : ndarray, broadcastable to (R, N), float32
            Weights, 0 on invalid samples.
        s : ndarray, shape (R, N), float32
            ``x`` sorted, invalid samples last as ``+inf``.
        n_valid : ndarray, shape (R,), int64
            Valid samples per row.
        kappa_low, kappa_high : float
            Clamp and rejection thresholds, in σ.
        max_iters, min_survivors : int
            As :meth:`wsc_fit`.

        Returns
        -------
        tuple of ndarray or None
            ``(keep, n_low, n_high, iterations)`` as :meth:`ArrayOps.wsc_weighted_fit`
            specifies: ``keep`` (R, N) bool in the order of ``x``, the others (R,)
            int64; None without numba or for data that is not float32.
        """
        kernels = numba_kernels()
        if kernels is None or x.dtype != np.float32 or s.dtype != np.float32:
            return None
        x = np.ascontiguousarray(x)
        rows = x.shape[0]
        keep = np.empty(x.shape, dtype=bool)
        counts = [np.empty(rows, np.int64) for _ in range(3)]
        kernels.wsc_weighted_rows(
            x, np.ascontiguousarray(np.broadcast_to(weights, x.shape), dtype=np.float32),
            np.ascontiguousarray(s), _counts(n_valid), float(kappa_low), float(kappa_high), max_iters,
            min_survivors, keep, *counts)
        return (keep, *counts)

    def band_copy(self, view: Array) -> Array:
        """Copy ``view`` into a new C-contiguous float32 array with one ``copyto``.

        Parameters
        ----------
        view : ndarray, any shape and strides, real
            The values to copy (typically a transposed band).

        Returns
        -------
        ndarray, same shape, float32
            A new C-ordered array; other dtypes are converted on the way.
        """
        out = np.empty(view.shape, dtype=np.float32)
        np.copyto(out, view, casting="unsafe")
        return out

    def nan_nonfinite(self, x: Array) -> Array:
        """Replace ±inf by NaN ("no data") in place.

        Parameters
        ----------
        x : ndarray, float32
            Samples, modified in place.

        Returns
        -------
        ndarray
            ``x`` itself.
        """
        # Infinite values are rare: one isinf pass, and a write only when there are some.
        inf = np.isinf(x)
        if inf.any():
            x[inf] = np.nan
        return x

    def sort_valid(self, x: Array) -> tuple[Array, Array]:
        """Sort rows ascending with NaN last as ``+inf``; count the valid samples.

        NumPy's in-place SIMD sort of the NaN → +inf copy, counting NaN only in rows
        that end in +inf; with numba, float32 rows are copied and counted in one pass,
        and rows of up to 48 samples are sorted by a sorting network.

        Parameters
        ----------
        x : ndarray, shape (..., N), float
            NaN = no data.

        Returns
        -------
        sorted : ndarray, shape (..., N), same dtype
            Each row ascending, its invalid samples last as ``+inf``.
        n_valid : ndarray, shape (..., 1), int64
            Valid (non-NaN) samples per row.
        """
        return _sort_valid_numpy(np.asarray(x))

    def paired_rounds(self, x: Array, r: Array, pair: Array, light: tuple, g: Array, delta: Array, *,
                      origin: bool, rounds: int) -> tuple[Array, Array, Array, Array] | None:
        """Run the paired fit's rounds through the numba kernels (:mod:`.pairfit_numpy`), or return None.

        Parameters
        ----------
        x, r, pair, light, g, delta : ndarray
            As :meth:`ArrayOps.paired_rounds`.
        origin : bool
            Likewise.
        rounds : int
            Likewise.

        Returns
        -------
        tuple or None
            ``(gain, keep, kept, s0)``, equal to the core's to the bit; None without
            numba or for rows that are not float32 (the core's rounds run).
        """
        from .pairfit_numpy import paired_rounds

        return paired_rounds(self, x, r, pair, light, g, delta, origin=origin, rounds=rounds)

    def median_valid(self, x: Array) -> Array:
        """Median of each row's valid samples: long rows selected, not sorted.

        Rows of at least 1024 samples (frame samples): each row's valid samples are
        partitioned around their middle (NumPy's SIMD selection: ~4× faster than its
        sort at 65 536 samples), the next order statistic taken as the minimum above
        it, and the two averaged as ``median_sorted`` does: the same values. Shorter
        rows: :meth:`ArrayOps.median_valid`.

        Parameters
        ----------
        x : ndarray, shape (R, M), float
            Rows; NaN = no data.

        Returns
        -------
        ndarray, shape (R,), dtype of ``x``
            NaN, without a warning, for a row without valid samples.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[-1] < _SELECT_MIN_N:
            return super().median_valid(x)
        nan = np.isnan(x)
        return median_of_rows((x[r][~nan[r]] for r in range(x.shape[0])), x.dtype, self.xp,  # copies
                              split=split_kernel(x))

    def centred_sums(self, s: Array, centre: Array, lo: Array, hi: Array, *,
                     whole: bool = False) -> tuple[Array, Array]:
        """Sum ``d`` and ``d²`` over ``s[p, lo[p]:hi[p]]`` with float64 ``einsum`` row sums.

        Parameters
        ----------
        s : ndarray, shape (R, N), float32
            Rows; values outside the ranges (``+inf`` padding included) are ignored.
        centre : ndarray, shape (R,), float32
            The value each row's differences ``d = f64(s) − f64(centre)`` are taken from.
        lo, hi : ndarray, shape (R,), int64
            The range ``[lo, hi)`` of each row.
        whole : bool
            ``[lo, hi)`` is each row's whole valid range, as :meth:`ArrayOps.centred_sums`
            defines it: the mask is then one ``isinf`` pass.

        Returns
        -------
        s1 : ndarray, shape (R,), float64
            Σd, 0 for an empty range.
        s2 : ndarray, shape (R,), float64
            Σd², 0 for an empty range.
        """
        return _centred_sums_numpy(s, centre, lo, hi, whole)

    def prefix_sums(self, d: Array) -> Array:
        """Compute inclusive prefix sums along the last axis (``numpy.cumsum``).

        Parameters
        ----------
        d : ndarray, shape (R, N)
            Values to accumulate.

        Returns
        -------
        ndarray, shape (R, N), same dtype
            ``out[:, j] = d[:, 0] + … + d[:, j]``, added sequentially.
        """
        return np.cumsum(d, axis=-1)

    def mad(self, s: Array, n_valid: Array, centre: Array) -> Array:
        """Compute the median of ``|s − centre|`` over each sorted row's valid samples.

        Parameters
        ----------
        s : ndarray, shape (R, N), float32
            Rows sorted ascending, invalid samples last as ``+inf``.
        n_valid : ndarray, shape (R,), int64
            Valid samples per row.
        centre : ndarray, shape (R,), float32
            The centre of each row (its median, usually).

        Returns
        -------
        ndarray, shape (R,), float32
            The raw MAD; NaN, without a warning, for a row without valid samples.
        """
        # NumPy's SIMD sort of the deviations beats a vectorised selection; the +inf
        # padding stays +inf, so the valid deviations come first, sorted.
        d = np.subtract(s, centre[:, None])
        np.abs(d, out=d)
        d.sort(axis=-1)
        return median_sorted(d, n_valid[:, None], xp=self.xp)

    def expand(self, mask: Array, pairs: list[tuple[Array, Array]]) -> list[Array]:
        """Undo a compaction by boolean-mask assignment into a copy of each ``fill``.

        Parameters
        ----------
        mask : ndarray, shape (R,), bool
            With ``A`` True entries.
        pairs : list of (values, fill)
            ``values`` shape (A,), one per True of ``mask`` in order; ``fill`` shape (R,).

        Returns
        -------
        list of ndarray, shape (R,)
            For each pair, a copy of ``fill`` with ``values`` where ``mask`` is True.
        """
        out = []
        for values, fill in pairs:
            full = fill.copy()
            full[mask] = values
            out.append(full)
        return out
