"""Frame normalisation: a gain and an offset per frame and channel.

Each method maps frame statistics (see :mod:`.framestats`) to ``gain`` and
``offset`` arrays of shape ``(N, C)``; the band pipeline applies
``x' = gain·x + offset`` to every sample. The reference frame
(``config.reference_frame``) always gets the identity.
"""

from __future__ import annotations

from typing import Any, Callable

from array_api_compat import device as _device

from .config import StackConfig
from .framestats import FrameSamples
from .nanstats import MAD_TO_SIGMA

__all__ = ["normalization", "NORMALIZERS"]

Array = Any

# linear_fit (upstream_spec §2.4): percentiles matched, gain cap, degeneracy limits.
_LINEAR_FIT_LOW_Q = 0.25
_LINEAR_FIT_HIGH_Q = 0.90
_LINEAR_FIT_MAX_GAIN = 20.0
_FLAT_REFERENCE_SPAN = 1e-5
# sky_mean: the sky level is the 25th percentile of luminance.
_SKY_Q = 0.25


def _identity(stats: FrameSamples) -> tuple[Array, Array]:
    xp = stats.xp
    dev = _device(stats.samples)
    shape = (stats.n_frames, stats.channels)
    return xp.ones(shape, dtype=xp.float32, device=dev), xp.zeros(shape, dtype=xp.float32, device=dev)


def _normalize_none(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Identity."""
    return _identity(stats)


def _percentile_match(stats: FrameSamples, ref: int) -> tuple[Array, Array]:
    """Map each frame's 25th / 90th percentiles onto the reference's (ZeMosaic's rule)."""
    xp = stats.xp
    low = stats.quantile(_LINEAR_FIT_LOW_Q)
    high = stats.quantile(_LINEAR_FIT_HIGH_Q)
    low_r, high_r = low[ref:ref + 1, :], high[ref:ref + 1, :]
    span = high - low
    span_r = high_r - low_r
    one = xp.ones_like(low)
    tiny = xp.maximum(1e-3 * one, 1e-3 * xp.maximum(xp.maximum(xp.abs(low), xp.abs(high)), one))
    usable = xp.isfinite(low) & xp.isfinite(high) & xp.isfinite(low_r) & xp.isfinite(high_r)
    usable = usable & (xp.abs(span) >= tiny)
    flat_ref = xp.abs(span_r) <= _FLAT_REFERENCE_SPAN
    safe_span = xp.where(usable, span, one)
    gain = xp.where(flat_ref, one, span_r / safe_span)
    offset = low_r - gain * low
    good = usable & xp.isfinite(gain) & xp.isfinite(offset)
    gain = xp.where(good, gain, one)
    offset = xp.where(good, offset, xp.zeros_like(offset))
    return gain, offset


def _normalize_linear_fit(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Fit each frame onto the reference sample by sample, per channel.

    Start: the frame's 25th / 90th percentiles mapped onto the reference's, gain =
    (H_ref − L_ref) / (H − L), offset = L_ref − gain·L (ZeMosaic's rule; a frame whose
    span is below max(1e-3, 1e-3·max(|L|, |H|, 1)) starts from the identity, a flat
    reference (span ≤ 1e-5) from an offset only). Then the paired, noise-weighted
    errors-in-variables fit of :mod:`.pairfit` on the samples at the same positions
    replaces it wherever the pairs carry a gain (≥ 16 pairs, weighted correlation ≥
    0.5): noise alone then moves a gain by ~1e-4 instead of ~1e-2. A fit that is
    non-finite or has |gain| > 20 keeps the identity.
    """
    return _linear_fit(stats, config, paired=True)


def _linear_fit(stats: FrameSamples, config: StackConfig, *, paired: bool) -> tuple[Array, Array]:
    xp = stats.xp
    ref = config.reference_frame
    gain, offset = _percentile_match(stats, ref)
    if paired:
        gain, offset, _ = stats.paired_fit(ref, gain, offset)
    one = xp.ones_like(gain)
    good = xp.isfinite(gain) & xp.isfinite(offset) & (xp.abs(gain) <= _LINEAR_FIT_MAX_GAIN)
    gain = xp.where(good, gain, one)
    offset = xp.where(good, offset, xp.zeros_like(offset))
    return _with_reference_identity(gain, offset, ref, xp)


def _normalize_sky_mean(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Additive: offset = sky(ref) − sky(frame), sky = 25th percentile of luminance.

    The same offset is added to every channel. An invalid reference sky leaves all
    frames unchanged; an invalid frame sky leaves that frame unchanged.
    """
    xp = stats.xp
    sky = stats.luminance_quantile(_SKY_Q)
    ref = config.reference_frame
    offset = sky[ref] - sky
    offset = xp.where(xp.isfinite(offset), offset, xp.zeros_like(offset))
    gain, _ = _identity(stats)
    offset = xp.broadcast_to(offset[:, None], gain.shape)
    return _with_reference_identity(gain, xp.asarray(offset, copy=True), ref, xp)


def _with_reference_identity(gain: Array, offset: Array, ref: int, xp: Any) -> tuple[Array, Array]:
    n = gain.shape[0]
    is_ref = (xp.arange(n, device=_device(gain)) == ref)[:, None]
    return (xp.where(is_ref, xp.ones_like(gain), gain),
            xp.where(is_ref, xp.zeros_like(offset), offset))


# --- Siril-style normalisations (anchors_features §2.16) --------------------------
# Location L = median and scale S = 1.4826·MAD of each frame's sub-sample, per
# channel; k = S_ref / S_i (the 1.4826, or Siril's 1.5, cancels in the ratio). A gain
# outside [1/20, 20] is as implausible as linear_fit's cap says, so such a frame
# keeps the identity, like any frame whose statistics are degenerate.
_ROBUST_MAX_GAIN = 20.0


def _robust_location_scale(stats: FrameSamples) -> tuple[Array, Array]:
    return stats.median(), MAD_TO_SIGMA * stats.mad()


def _finish(gain: Array, offset: Array, good: Array, ref: int, xp: Any) -> tuple[Array, Array]:
    good = good & xp.isfinite(gain) & xp.isfinite(offset)
    good = good & (gain >= 1.0 / _ROBUST_MAX_GAIN) & (gain <= _ROBUST_MAX_GAIN)
    gain = xp.where(good, gain, xp.ones_like(gain))
    offset = xp.where(good, offset, xp.zeros_like(offset))
    return _with_reference_identity(gain, offset, ref, xp)


def _positive(a: Array, xp: Any) -> Array:
    return xp.isfinite(a) & (a > 0)


def _safe(a: Array, good: Array, xp: Any) -> Array:
    return xp.where(good, a, xp.ones_like(a))


def _normalize_additive(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Siril additive: x' = x − (L_i − L_ref), per channel (L = median)."""
    xp = stats.xp
    loc, _ = _robust_location_scale(stats)
    ref = config.reference_frame
    loc_r = loc[ref:ref + 1, :]
    good = xp.isfinite(loc) & xp.isfinite(loc_r)
    offset = xp.where(good, loc_r - loc, xp.zeros_like(loc))
    return _finish(xp.ones_like(loc), offset, good, ref, xp)


def _normalize_multiplicative(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Siril multiplicative: x' = x · L_ref / L_i, per channel; needs L > 0."""
    xp = stats.xp
    loc, _ = _robust_location_scale(stats)
    ref = config.reference_frame
    loc_r = loc[ref:ref + 1, :]
    good = _positive(loc, xp) & _positive(loc_r, xp)
    gain = _safe(loc_r, good, xp) / _safe(loc, good, xp)
    return _finish(gain, xp.zeros_like(loc), good, ref, xp)


def _normalize_additive_scaling(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Siril additive + scaling: x' = k·x − (k·L_i − L_ref), k = S_ref / S_i, per channel."""
    xp = stats.xp
    loc, scale = _robust_location_scale(stats)
    ref = config.reference_frame
    loc_r, scale_r = loc[ref:ref + 1, :], scale[ref:ref + 1, :]
    good = _positive(scale, xp) & _positive(scale_r, xp) & xp.isfinite(loc) & xp.isfinite(loc_r)
    k = _safe(scale_r, good, xp) / _safe(scale, good, xp)
    offset = xp.where(good, loc_r - k * loc, xp.zeros_like(loc))
    return _finish(k, offset, good, ref, xp)


def _normalize_multiplicative_scaling(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Siril multiplicative + scaling: x' = k·x·L_ref / L_i, k = S_ref / S_i, per channel.

    Exactly Siril's formula: for frames that differ only by a gain g both factors
    correct it (gain 1/g²), so prefer ``multiplicative`` or ``additive_scaling`` there.
    """
    xp = stats.xp
    loc, scale = _robust_location_scale(stats)
    ref = config.reference_frame
    loc_r, scale_r = loc[ref:ref + 1, :], scale[ref:ref + 1, :]
    good = (_positive(scale, xp) & _positive(scale_r, xp) & _positive(loc, xp)
            & _positive(loc_r, xp))
    gain = (_safe(scale_r, good, xp) / _safe(scale, good, xp)) * (
        _safe(loc_r, good, xp) / _safe(loc, good, xp))
    return _finish(gain, xp.zeros_like(loc), good, ref, xp)


def _normalize_median(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """ZeMosaic grid's median ratio: x' = x · M_ref / M_i, one gain per frame.

    M is the median of the frame with all channels pooled (as the grid does), so the
    gain is the same for every channel and frame colours are preserved; use
    ``multiplicative`` for a per-channel ratio. Unlike the grid, the reference is a
    fixed frame (``reference_frame``), not the first frame of each chunk.
    """
    xp = stats.xp
    med = stats.pooled_median()[:, None]
    ref = config.reference_frame
    med_r = med[ref:ref + 1, :]
    good = _positive(med, xp) & _positive(med_r, xp)
    gain = _safe(med_r, good, xp) / _safe(med, good, xp)
    shape = (stats.n_frames, stats.channels)
    gain = xp.broadcast_to(gain, shape)
    good = xp.broadcast_to(good, shape)
    return _finish(gain, xp.zeros(shape, dtype=gain.dtype, device=_device(gain)), good, ref, xp)


#: Normalisation methods by public name.
NORMALIZERS: dict[str, Callable[[FrameSamples, StackConfig], tuple[Array, Array]]] = {
    "none": _normalize_none,
    "linear_fit": _normalize_linear_fit,
    "sky_mean": _normalize_sky_mean,
    "median": _normalize_median,
    "additive": _normalize_additive,
    "multiplicative": _normalize_multiplicative,
    "additive_scaling": _normalize_additive_scaling,
    "multiplicative_scaling": _normalize_multiplicative_scaling,
}


def normalization(stats: FrameSamples, config: StackConfig, *, paired: bool = True) -> tuple[Array, Array]:
    """Compute the gains and offsets of the normalisation ``config.normalize``.

    Parameters
    ----------
    stats : FrameSamples
        Sub-samples of all N frames.
    config : StackConfig
        Its ``normalize`` names the method, ``reference_frame`` the frame the others
        are matched to.
    paired : bool
        ``linear_fit`` only: refine the percentile match by the paired fit of
        :mod:`.pairfit` (the samples of all frames are at the same sky positions).
        False keeps the percentile match (ZeMosaic's rule), e.g. for samples
        interpolated from different pixel grids, where stars do not pair exactly.

    Returns
    -------
    gain : array, shape (N, C), float32
        Multiplier of each frame and channel, ``x' = gain·x + offset``; 1 for the
        reference frame and for frames the method cannot fit.
    offset : array, shape (N, C), float32
        Additive term, in the samples' units (e.g. ADU); 0 for the reference frame.

    Notes
    -----
    Both are in the namespace and on the device of ``stats``.
    """
    if config.normalize == "linear_fit" and not paired:
        gain, offset = _linear_fit(stats, config, paired=False)
    else:
        gain, offset = NORMALIZERS[config.normalize](stats, config)
    xp = stats.xp
    return xp.astype(gain, xp.float32), xp.astype(offset, xp.float32)
