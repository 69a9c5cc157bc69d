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


def _normalize_linear_fit(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Map each frame's 25th / 90th percentiles onto the reference's, per channel.

    gain = (H_ref − L_ref) / (H − L), offset = L_ref − gain·L. A frame whose own
    span is below max(1e-3, 1e-3·max(|L|, |H|, 1)), or whose fit is non-finite or has
    |gain| > 20, keeps the identity; a flat reference (span ≤ 1e-5) gives an offset
    only (ZeMosaic's rules).
    """
    xp = stats.xp
    low = stats.quantile(_LINEAR_FIT_LOW_Q)
    high = stats.quantile(_LINEAR_FIT_HIGH_Q)
    ref = config.reference_frame
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
    good = usable & xp.isfinite(gain) & xp.isfinite(offset) & (xp.abs(gain) <= _LINEAR_FIT_MAX_GAIN)
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


#: Normalisation methods by public name.
NORMALIZERS: dict[str, Callable[[FrameSamples, StackConfig], tuple[Array, Array]]] = {
    "none": _normalize_none,
    "linear_fit": _normalize_linear_fit,
    "sky_mean": _normalize_sky_mean,
}


def normalization(stats: FrameSamples, config: StackConfig) -> tuple[Array, Array]:
    """Gains and offsets of ``config.normalize``, each shape ``(N, C)``, float32."""
    gain, offset = NORMALIZERS[config.normalize](stats, config)
    xp = stats.xp
    return xp.astype(gain, xp.float32), xp.astype(offset, xp.float32)
