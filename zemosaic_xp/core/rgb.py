"""Post-stack RGB equalisation (ZeMosaic's ``equalize_rgb_medians_inplace``, upstream_spec §2.8).

A stacked colour image often carries a small colour cast in its background. The
equalisation measures each channel's median over a background mask and multiplies
the channels by gains that pull those medians toward their common median, with the
gains clipped to a narrow range so that real colour is never rewritten:

1. valid = pixels whose 3 channels are all finite and > 0; lum = per-pixel median
   of the channels;
2. mask = valid ∧ P_lo <= lum <= P_hi, (P_lo, P_hi) = percentiles (5, 85) of lum
   over the valid pixels (linear interpolation);
3. give up when the mask has fewer than ``min_samples`` (5000) pixels or covers
   less than ``min_coverage`` (1 %) of the valid ones;
4. med_c = median of channel c over the mask; target = median of the finite,
   positive med_c; gain_c = clip(target / med_c, 0.95, 1.05); image_c *= gain_c.

Opt-in (``StackConfig.rgb_equalize``). The decision and the gains are returned as a
JSON-able dict with upstream's keys and decision strings.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as _device

from .config import StackConfig
from .nanstats import median_sorted, quantile_sorted, sort_valid

__all__ = ["equalize_rgb", "poststack_rgb_equalization"]

Array = Any


def _info(decision: str, **extra: Any) -> dict[str, Any]:
    info = {"enabled": True, "applied": False, "decision": decision, "samples": 0,
            "mask_coverage": 0.0, "target_median": None, "raw_gains": None,
            "clipped_gains": None, "gain_r": 1.0, "gain_g": 1.0, "gain_b": 1.0}
    info.update(extra)
    return info


def _nan_outside(x: Array, mask: Array, xp: Any) -> Array:
    nan = xp.asarray(xp.nan, dtype=x.dtype, device=_device(x))
    return xp.where(mask, x, nan)


def equalize_rgb(image: Array, /, *, gain_clip: tuple[float, float] = (0.95, 1.05),
                 bg_percentile: tuple[float, float] = (5.0, 85.0), min_samples: int = 5000,
                 min_coverage: float = 0.01) -> tuple[Array, dict[str, Any]]:
    """Equalise the background medians of an RGB image; see the module docstring.

    Parameters
    ----------
    image : array, shape (H, W, 3), float32
        Stacked image; NaN = no data (such pixels are left as they are).
    gain_clip : (float, float)
        Range ``(low, high)`` the gains are clipped to.
    bg_percentile : (float, float)
        Luminance percentiles (0–100) bounding the background mask.
    min_samples : int
        Fewest background-mask pixels for the equalisation to apply.
    min_coverage : float
        Smallest mask / valid-pixel fraction for it to apply, in [0, 1].

    Returns
    -------
    image : array, shape (H, W, 3), on the device of ``image``
        A new array with the gains applied, or ``image`` itself when not applied.
    info : dict
        ``applied``, ``decision`` (``applied``, ``non_rgb``, ``no_valid_pixels``,
        ``percentile_error``, ``insufficient_samples``, ``insufficient_coverage``,
        ``invalid_channel_medians`` or ``invalid_target``), ``samples``,
        ``mask_coverage``, ``target_median``, ``raw_gains``, ``clipped_gains``,
        ``gain_r/g/b``.
    """
    xp = array_namespace(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        return image, _info("non_rgb")
    h, w = int(image.shape[0]), int(image.shape[1])
    valid = xp.all(xp.isfinite(image) & (image > 0), axis=-1)
    n_valid = int(xp.sum(xp.astype(valid, xp.int64)))
    if n_valid == 0:
        return image, _info("no_valid_pixels")
    lum = xp.sort(image, axis=-1, stable=False)[..., 1]  # median of 3 channels
    s, n = sort_valid(xp.reshape(_nan_outside(lum, valid, xp), (1, h * w)), xp=xp)
    p_lo = quantile_sorted(s, n, bg_percentile[0] / 100.0, xp=xp)
    p_hi = quantile_sorted(s, n, bg_percentile[1] / 100.0, xp=xp)
    bounds = [float(v) for v in xp.concat([p_lo, p_hi])]
    if not all(math.isfinite(v) for v in bounds):
        return image, _info("percentile_error")
    mask = valid & (lum >= bounds[0]) & (lum <= bounds[1])
    samples = int(xp.sum(xp.astype(mask, xp.int64)))
    coverage = samples / n_valid
    if samples < min_samples:
        return image, _info("insufficient_samples", samples=samples, mask_coverage=coverage)
    if coverage < min_coverage:
        return image, _info("insufficient_coverage", samples=samples, mask_coverage=coverage)
    planes = xp.reshape(xp.permute_dims(_nan_outside(image, mask[..., None], xp), (2, 0, 1)), (3, h * w))
    sc, nc = sort_valid(planes, xp=xp)
    medians = [float(v) for v in median_sorted(sc, nc, xp=xp)]
    usable = [m for m in medians if math.isfinite(m) and m > 0]
    if len(usable) != 3:
        return image, _info("invalid_channel_medians", samples=samples, mask_coverage=coverage)
    target = statistics.median(usable)
    if not (math.isfinite(target) and target > 0):
        return image, _info("invalid_target", samples=samples, mask_coverage=coverage)
    raw = [target / m for m in medians]
    clipped = [min(max(g, gain_clip[0]), gain_clip[1]) for g in raw]
    gains = xp.asarray(clipped, dtype=image.dtype, device=_device(image))
    info = _info("applied", applied=True, samples=samples, mask_coverage=coverage,
                 target_median=target, raw_gains=raw, clipped_gains=clipped,
                 gain_r=clipped[0], gain_g=clipped[1], gain_b=clipped[2])
    return image * gains, info


def poststack_rgb_equalization(image: Array, config: StackConfig, *, mono: bool) -> tuple[Array, dict[str, Any]]:
    """Apply :func:`equalize_rgb` when ``config.rgb_equalize`` asks for it.

    Parameters
    ----------
    image : array, shape (H, W, C), float32, or None
        The stacked image; NaN = no data. Left alone when the equalisation is off or
        ``mono``.
    config : StackConfig
        ``rgb_equalize`` switches it on; ``rgb_equalize_*`` are its parameters.
    mono : bool
        The stack has no channel axis: nothing to equalise.

    Returns
    -------
    image : array or None
        A new equalised image on the device of ``image``, or ``image`` itself.
    info : dict
        Recorded in ``StackResult.stats["rgb_equalization"]``: decision ``disabled``
        when off, ``non_rgb`` for mono or non-3-channel stacks, else as
        :func:`equalize_rgb`.
    """
    if not config.rgb_equalize:
        info = _info("disabled")
        info["enabled"] = False
        return image, info
    if mono:
        return image, _info("non_rgb")
    return equalize_rgb(image, gain_clip=config.rgb_equalize_gain_clip,
                        bg_percentile=config.rgb_equalize_bg_percentile,
                        min_samples=config.rgb_equalize_min_samples,
                        min_coverage=config.rgb_equalize_min_coverage)
