"""Sample weights: quality weights per frame and channel, and user weights.

Weights multiply: quality (``config.weighting``) × user weights × (optional) radial
map. A sample whose final weight is 0 or not finite counts as "no data" (see
:class:`~zemosaic_xp.core.samples.Samples`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from array_api_compat import device as _device

from .config import StackConfig
from .framestats import FrameSamples

__all__ = ["quality_weights", "WEIGHTERS", "user_weight_kind", "radial_weight_map", "radial_weight_at"]

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
    # Per-pixel 1/σ² from the frames' own uncertainties (NDData input, zemosaic_xp.api):
    # no frame-level weight.
    "uncertainty": _weights_none,
}


def quality_weights(stats: FrameSamples, gain: Array, config: StackConfig) -> Array | None:
    """Compute the quality weights of ``config.weighting`` for every frame and channel.

    Parameters
    ----------
    stats : FrameSamples
        Sub-samples of all N frames, before normalisation.
    gain : array, shape (N, C), float32
        Normalisation gains (:func:`~.normalize.normalization`): noise is weighed as
        it will be after normalisation.
    config : StackConfig
        Its ``weighting`` names the method.

    Returns
    -------
    array, shape (N, C), float32, or None
        Weights in the namespace and on the device of ``stats`` (the best frame
        channel gets 1 with ``noise_variance``); None when every weight is equal.
    """
    return WEIGHTERS[config.weighting](stats, gain, config)


def user_weight_kind(weights: Any, n_frames: int, height: int, width: int, channels: int,
                     mono: bool) -> str:
    """Classify user weights by their shape.

    Parameters
    ----------
    weights : array
        User weights; only their shape is read.
    n_frames, height, width, channels : int
        The stack's ``N``, ``H``, ``W`` and ``C``.
    mono : bool
        The frames have no channel axis (then ``(N, H, W, 1)`` is also accepted).

    Returns
    -------
    {"frame", "channel", "pixel"}
        ``"frame"`` for (N,), ``"channel"`` for (N, C) (colour stacks only),
        ``"pixel"`` for (N, H, W) or (N, H, W, C).

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


# Radial map (upstream_spec §2.5): ZeMosaic clamps the feather fraction to [0.1, 1].
_MIN_FEATHER = 0.1


def radial_weight_map(rows: int, width: int, /, *, row_start: int = 0, full_height: int | None = None,
                      col_start: int = 0, full_width: int | None = None, feather_fraction: float = 0.8,
                      shape_power: float = 2.0, floor: float = 0.05, xp: Any, device: Any = None) -> Array:
    """Compute the block ``[row_start, +rows) × [col_start, +width)`` of ZeMosaic's radial weight map.

    ``w = max(cos(π/2 · clip(r / feather, 0, 1))^power, floor)`` where r is the distance
    from the frame centre ((H − 1)/2, (W − 1)/2) divided by half the frame diagonal,
    0.5·hypot(H, W), with H = ``full_height`` (default ``rows``) and W = ``full_width``
    (default ``width``): the block is the whole frame unless told otherwise. Using the
    frame's row and column indices makes the map independent of the block layout.

    Parameters
    ----------
    rows, width : int
        Shape of the block.
    row_start : int
        Frame row of the block's first row.
    full_height : int, optional
        Frame height H (default ``rows``).
    col_start : int
        Frame column of the block's first column.
    full_width : int, optional
        Frame width W (default ``width``).
    feather_fraction : float
        Radius, as a fraction of the half diagonal, where the map reaches ``floor``;
        clamped to [0.1, 1] as ZeMosaic does.
    shape_power : float
        Exponent of the cosine.
    floor : float
        Smallest weight, in [0, 1].
    xp : namespace
        The array namespace to build the map in.
    device : object, optional
        Device of the map (default: the namespace's default device).

    Returns
    -------
    array, shape (rows, width), float32, on ``device``
        1 at the centre, falling to ``floor`` at r >= feather.
    """
    f64 = xp.float64
    y = xp.astype(xp.arange(row_start, row_start + rows, device=device), f64)[:, None]
    x = xp.astype(xp.arange(col_start, col_start + width, device=device), f64)[None, :]
    return radial_weight_at(y, x, height=rows if full_height is None else int(full_height),
                            width=width if full_width is None else int(full_width),
                            feather_fraction=feather_fraction, shape_power=shape_power, floor=floor, xp=xp)


def radial_weight_at(y: Array, x: Array, /, *, height: int, width: int, feather_fraction: float = 0.8,
                     shape_power: float = 2.0, floor: float = 0.05, xp: Any) -> Array:
    """Evaluate ZeMosaic's radial weight of a ``height × width`` frame at frame pixel positions.

    The one home of the formula (:func:`radial_weight_map` evaluates it on a pixel
    grid; grid mode at the frame positions its reprojected patch samples).

    Parameters
    ----------
    y, x : array, float64, broadcastable
        Frame pixel coordinates (row, column; pixel centres are integers). NaN gives NaN.
    height, width : int
        Frame size H, W in pixels: the centre is ((H − 1)/2, (W − 1)/2) and r is
        divided by 0.5·hypot(H, W).
    feather_fraction : float
        Radius, as a fraction of the half diagonal, where the weight reaches
        ``floor``; clamped to [0.1, 1] as ZeMosaic does.
    shape_power : float
        Exponent of the cosine.
    floor : float
        Smallest weight, in [0, 1].
    xp : namespace
        The array namespace of `y` and `x`.

    Returns
    -------
    array, the broadcast shape of `y` and `x`, float32, on their device
        ``max(cos(π/2 · clip(r / feather, 0, 1))^power, floor)``: 1 at the centre,
        ``floor`` at r >= feather and beyond the frame; NaN where a coordinate is NaN.
    """
    feather = min(max(float(feather_fraction), _MIN_FEATHER), 1.0)
    dy = y - (height - 1) / 2.0
    dx = x - (width - 1) / 2.0
    r = xp.sqrt(dy * dy + dx * dx) / (0.5 * math.hypot(height, width))
    w = xp.cos((math.pi / 2.0) * xp.clip(r / feather, 0.0, 1.0))
    w = xp.pow(xp.maximum(w, xp.zeros_like(w)), float(shape_power))
    return xp.astype(xp.maximum(w, xp.full_like(w, float(floor))), xp.float32)
