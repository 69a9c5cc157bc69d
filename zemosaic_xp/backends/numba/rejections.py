"""The rejections of the numba band path: one wrapper per algorithm, from sorted rows to kept ranges.

Each wrapper runs its algorithm's row kernel (one module per algorithm) on a band's
sorted rows ``s`` and valid counts, and returns what the combine needs
(:class:`Kept`). Shared by the unweighted band path (:mod:`.band`) and the weighted one
(:mod:`.weighted_band`): rejections look at the values only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .aot import entry
from .constants import FLOOR_SLACK

__all__ = ["Kept", "REJECTIONS", "REJECT_CODES", "NO_F32"]

# The wrappers below take their kernels from :func:`.aot.entry` when they run: a stack
# loads (and numba reads from its cache) only the rejection it runs.

NO_F32 = np.zeros(0, np.float32)
_NO_F64 = np.zeros(0, np.float64)
_NO_SPLIT = np.zeros(0, np.bool_)
_NO_KEEP = np.zeros((0, 0), np.bool_)
_NO_WINSOR = np.zeros((0, 2), np.float32)


class Kept(NamedTuple):
    """What a rejection kernel found, in the arguments of :func:`~.combine.combine_ranges`.

    Attributes
    ----------
    lo, hi, iterations : ndarray, shape (P,), int64
        The kept range ``[lo, hi)`` of each sorted row (on a split row: samples
        rejected low, and ``n_valid`` − samples rejected high) and the iterations run.
    centre, kept_sum : ndarray, shape (P,) or (0,)
        The row's median and ``Σ (x − median)`` over the kept range, for rejections
        that carry them (κ-σ, the WSC flavours); empty otherwise.
    split, keep : ndarray
        Rows whose kept set is not a range and their kept sorted positions
        (``linear_fit_clip``); empty otherwise.
    winsor : ndarray, shape (P, 2) or (0, 2), float32
        Clamp bounds of rejected samples that stay in the combine
        (``winsorized_quantile`` with ``winsor_rewinsor``); empty otherwise.
    """

    lo: np.ndarray
    hi: np.ndarray
    iterations: np.ndarray
    centre: np.ndarray = NO_F32
    kept_sum: np.ndarray = _NO_F64
    split: np.ndarray = _NO_SPLIT
    keep: np.ndarray = _NO_KEEP
    winsor: np.ndarray = _NO_WINSOR


def _ranges(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int64)


# One wrapper per rejection: ``(s, n_valid, config, centre, sums) -> Kept``. ``centre`` and
# ``sums`` are the gather's medians and centred sums (``sums`` empty when it took none).
def _reject_none(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    zeros = np.zeros_like(n_valid)
    return Kept(zeros, n_valid, zeros)


def _reject_kappa_sigma(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray,
                        sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    kept_sum = np.empty(n_valid.shape[0], np.float64)
    kappa_sigma_rows = entry("kappa_sigma_rows")
    # κ as float32: the core forms the bounds c ± κ·σ in float32 (NumPy's weak scalars).
    kappa_sigma_rows(s, n_valid, np.float32(config.kappa_low), np.float32(config.kappa_high), config.sigma_ddof,
                     config.effective_max_iters(), config.min_survivors, lo, hi, it, centre, kept_sum, sums)
    return Kept(lo, hi, it, centre, kept_sum)


def _reject_wsc(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    kept_sum = np.empty(n_valid.shape[0], np.float64)
    wsc = entry("wsc_pixinsight_rows" if config.wsc_impl == "pixinsight" else "wsc_rows")
    wsc(s, n_valid, float(config.kappa_low), float(config.kappa_high), config.effective_max_iters(),
        config.min_survivors, lo, hi, it, centre, kept_sum, sums)
    return Kept(lo, hi, it, centre, kept_sum)


def _reject_percentile(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray,
                       sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    percentile_rows = entry("percentile_rows")
    percentile_rows(s, n_valid, np.float32(config.percentile_low), np.float32(config.percentile_high),
                    config.min_survivors, lo, hi, it)
    return Kept(lo, hi, it)


def _reject_mad(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    mad_rows = entry("mad_rows")
    mad_rows(s, n_valid, np.float32(config.kappa_low), np.float32(config.kappa_high), config.effective_max_iters(),
             config.min_survivors, lo, hi, it)
    return Kept(lo, hi, it)


def _reject_minmax(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    minmax_rows = entry("minmax_rows")
    minmax_rows(n_valid, int(config.minmax_low), int(config.minmax_high), config.min_survivors, lo, hi, it)
    return Kept(lo, hi, it)


def _reject_gesd(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    import math

    from ...core.reject.gesd_table import gesd_critical_values

    lo, hi, it = _ranges(n_valid.shape[0])
    n_frames = s.shape[1]
    fraction = float(config.gesd_outlier_fraction)
    lam = np.asarray(gesd_critical_values(n_frames, float(config.gesd_alpha)), np.float64)
    max_steps = min(int(math.floor(fraction * n_frames + FLOOR_SLACK)), max(n_frames - 2, 0))
    gesd_rows = entry("gesd_rows")
    gesd_rows(s, n_valid, fraction, lam, max_steps, config.min_survivors, lo, hi, it)
    return Kept(lo, hi, it)


def _reject_linear_fit_clip(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray,
                            sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    split = np.empty(n_valid.shape[0], np.bool_)
    keep = np.empty(s.shape, np.bool_)  # written on split rows only
    linear_fit_clip_rows = entry("linear_fit_clip_rows")
    linear_fit_clip_rows(s, n_valid, float(config.kappa_low), float(config.kappa_high), config.effective_max_iters(),
                         config.min_survivors, lo, hi, it, split, keep)
    return Kept(lo, hi, it, split=split, keep=keep)


def _reject_winsorized_quantile(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray,
                                sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    winsor = np.empty((n_valid.shape[0], 2), np.float32)
    low, high = config.winsor_limits
    winsorized_quantile_rows = entry("winsorized_quantile_rows")
    winsorized_quantile_rows(s, n_valid, float(low), float(high), np.float32(config.kappa_low),
                             np.float32(config.kappa_high), config.min_survivors, lo, hi, it, winsor)
    return Kept(lo, hi, it, winsor=winsor if config.winsor_rewinsor else _NO_WINSOR)


def _reject_auto(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    from ...core.reject.auto import AUTO_MAD_MAX_N

    # core/reject/auto.py: mad's ranges on rows with <= AUTO_MAD_MAX_N valid samples,
    # gesd's elsewhere; each kernel runs only on its own rows (both are per row, so the
    # result is the core's bit for bit).
    small = n_valid <= AUTO_MAD_MAX_N
    lo, hi, it = _ranges(n_valid.shape[0])
    for rows, reject in ((small, _reject_mad), (~small, _reject_gesd)):
        if rows.any():
            part = reject(np.ascontiguousarray(s[rows]), np.ascontiguousarray(n_valid[rows]), config, centre, sums)
            lo[rows], hi[rows], it[rows] = part.lo, part.hi, part.iterations
    return Kept(lo, hi, it)


#: The rejection of each algorithm name: a wrapper that runs its kernel on a band's sorted rows.
REJECTIONS = {
    "none": _reject_none,
    "kappa_sigma": _reject_kappa_sigma,
    "winsorized_sigma_clip": _reject_wsc,
    "percentile": _reject_percentile,
    "mad": _reject_mad,
    "minmax": _reject_minmax,
    "gesd": _reject_gesd,
    "linear_fit_clip": _reject_linear_fit_clip,
    "winsorized_quantile": _reject_winsorized_quantile,
    "auto": _reject_auto,
}
#: Codes of the supported algorithms (``none`` is 0).
REJECT_CODES = {name: code for code, name in enumerate(REJECTIONS)}
