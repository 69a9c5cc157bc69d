"""Sample weights: quality weights per frame and channel, and user weights.

Weights multiply: quality (``config.weighting``) × user weights × (optional) radial
map. A sample whose final weight is 0 or not finite counts as "no data" (see
:class:`~zemosaic_xp.core.samples.Samples`).
"""

from __future__ import annotations

from typing import Any, Callable

from array_api_compat import device as _device

from .config import StackConfig
from .framestats import FrameSamples

__all__ = ["quality_weights", "WEIGHTERS", "user_weight_kind"]

Array = Any

# noise_variance (upstream_spec §2.5): σ below this is "no measurable noise" (a
# dead or constant frame), and such frames get this tiny weight instead of none.
_MIN_SIGMA = 1e-9
_INVALID_WEIGHT = 1e-6


def _weights_none(stats: FrameSamples, gain: Array, config: StackConfig) -> Array | None:
    """Equal weights (returns None)."""
    return None


def _weights_noise_variance(stats: FrameSamples, gain: Array, config: StackConfig) -> Array:
    """Inverse noise variance per frame and channel, best = exactly 1.

    σ is the 3σ / 5-iteration clipped std of the normalised frame (the raw σ times
    |gain|); w = min_var / var with min_var the smallest variance over all frames and
    channels. A frame channel with σ ≤ 1e-9 or no valid pixel gets 1e-6.
    """
    xp = stats.xp
    sigma = stats.clipped_std(kappa=3.0, max_iters=5) * xp.abs(gain)
    good = xp.isfinite(sigma) & (sigma > _MIN_SIGMA)
    var = xp.where(good, sigma * sigma, xp.ones_like(sigma))
    if not bool(xp.any(good)):
        return xp.ones_like(sigma)
    inf = xp.asarray(xp.inf, dtype=var.dtype, device=_device(var))
    min_var = xp.min(xp.where(good, var, inf))
    return xp.where(good, min_var / var, xp.full_like(var, _INVALID_WEIGHT))


#: Quality weighting methods by public name: (stats, gain, config) -> (N, C) or None.
WEIGHTERS: dict[str, Callable[[FrameSamples, Array, StackConfig], Array | None]] = {
    "none": _weights_none,
    "noise_variance": _weights_noise_variance,
}


def quality_weights(stats: FrameSamples, gain: Array, config: StackConfig) -> Array | None:
    """Quality weights of ``config.weighting``: shape ``(N, C)`` float32, or None (equal)."""
    return WEIGHTERS[config.weighting](stats, gain, config)


def user_weight_kind(weights: Any, n_frames: int, height: int, width: int, channels: int,
                     mono: bool) -> str:
    """Classify user weights by shape: ``"frame"`` (N,), ``"channel"`` (N, C), ``"pixel"``.

    Raises
    ------
    ValueError
        A shape that matches none of (N,), (N, C), (N, H, W), (N, H, W, C).
    """
    shape = tuple(int(v) for v in weights.shape)
    if shape == (n_frames,):
        return "frame"
    if shape == (n_frames, channels) and not mono:
        return "channel"
    if shape == (n_frames, height, width) or (not mono and shape == (n_frames, height, width, channels)):
        return "pixel"
    if mono and shape == (n_frames, height, width, 1):
        return "pixel"
    accepted = [f"({n_frames},)", f"({n_frames}, {height}, {width})"]
    if not mono:
        accepted[1:1] = [f"({n_frames}, {channels})"]
        accepted.append(f"({n_frames}, {height}, {width}, {channels})")
    msg = f"`weights` has shape {shape}; expected one of {', '.join(accepted)} for these frames"
    raise ValueError(msg)
