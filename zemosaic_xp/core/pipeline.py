"""The stack pipeline: validate → normalise → weight → reject → combine, band by band.

Every stack of this package — ``stack()`` of in-memory frames, classic master tiles
streamed from FITS files, grid tiles cell by cell, on any backend — goes through the
same steps:

1. :func:`plan_frames` — frame-global gains, offsets and quality weights from a
   sub-sample of every frame (:class:`~.framestats.FrameSamples`);
2. the one band driver, :func:`~.band_driver.stack_bands`, which calls
   :func:`stack_band` on every block of rows × columns × frames;
3. :func:`summary_stats` — the stack's statistics from the blocks' counters, and
   :func:`finish_stack` — RGB equalisation and the :class:`StackResult`.

Everything is per pixel, so the output does not depend on the band size, the block
layout or the device a block ran on.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from array_api_compat import array_namespace
from array_api_compat import device as _device

from .combine import combine
from .config import StackConfig
from .framestats import FrameSamples
from .normalize import normalization
from .ops import ArrayOps
from .reject import reject
from .rgb import poststack_rgb_equalization
from .samples import Samples
from .uncertainty import standard_error
from .weights import quality_weights, radial_weight_map

__all__ = [
    "StackResult",
    "FramePlan",
    "BandResult",
    "RESULT_NAMES",
    "FLOAT_RESULTS",
    "plan_frames",
    "stack_band",
    "summary_stats",
    "finish_stack",
    "rows_per_band",
    "memory_factor",
]

Array = Any
ProgressCallback = Callable[..., Any]

# Working memory of one band, in multiples of the band's float32 bytes (N·h·W·C·4):
# the band itself, its sorted copy, masks and the float64 temporaries of each step.
_MEMORY_FACTOR = {"none": 6.0, "kappa_sigma": 14.0, "winsorized_sigma_clip": 20.0}
# Catalogue rejections: int64 ranks (two argsorts) and float64 prefix sums / fits.
_MEMORY_FACTOR.update({"percentile": 8.0, "mad": 10.0, "minmax": 16.0, "gesd": 16.0,
                       "winsorized_quantile": 16.0, "linear_fit_clip": 30.0})
# auto runs mad and gesd on the band and keeps both results until it picks per pixel.
_MEMORY_FACTOR["auto"] = _MEMORY_FACTOR["mad"] + _MEMORY_FACTOR["gesd"]
_DEFAULT_MEMORY_FACTOR = 16.0


@dataclass
class StackResult:
    """Result of a stack.

    Attributes
    ----------
    image : array, shape (H, W) or (H, W, C), float32
        Combined image; NaN where no sample survived.
    weight_sum : array, same shape, float32
        Σ weights of the surviving samples (their count when unweighted); 0 where none.
    coverage : array, same shape, int32
        Number of surviving samples per pixel.
    rejected_low, rejected_high : array, same shape, int32
        Samples rejected below / above the pixel's bounds (rejection maps).
    stats : dict
        JSON-able: method names, iterations, rejected fractions, normalisation gains and
        offsets, weights, backend, band rows, timings.
    uncertainty : array, same shape, float32, or None
        Standard error (1σ) of each combined pixel, in the image's units, from the
        weights and the surviving samples (:mod:`~zemosaic_xp.core.uncertainty`); NaN
        where fewer than two samples survived. None when it was not computed.
    unit : object or None
        The unit the input frames shared (astropy ``NDData`` / ``CCDData`` inputs);
        None for plain arrays.
    """

    image: Array
    weight_sum: Array
    coverage: Array
    rejected_low: Array
    rejected_high: Array
    stats: dict = field(default_factory=dict)
    uncertainty: Array | None = None
    unit: Any = None

    def to_ccddata(self, *, unit: Any = None) -> Any:
        """Return the stack as an astropy ``CCDData`` (``zemosaic_xp.nddata.to_ccddata``).

        Parameters
        ----------
        unit : str or astropy.units.UnitBase, optional
            The data's unit; default :attr:`unit`.

        Returns
        -------
        astropy.nddata.CCDData
            The image, a ``StdDevUncertainty`` of :attr:`uncertainty` and a mask that
            is True where no sample survived.
        """
        # By module name, on call: the core imports nothing above it (docs/architecture.md).
        return importlib.import_module("zemosaic_xp.nddata").to_ccddata(self, unit=unit)


@dataclass
class FramePlan:
    """Frame-global parameters of one stack, shared by all its bands.

    Attributes
    ----------
    gain, offset : array, shape (N, C), float32
        Normalisation ``x' = gain·x + offset``.
    weights : array, shape (N, C), float32, or None
        Quality weights × user frame weights; None = all equal.
    stats : dict
        JSON-able record of the plan (methods, gains, offsets, weights), merged into
        ``StackResult.stats``.
    identity : bool
        Every gain is 1 and every offset 0: bands skip the normalisation pass.
    """

    gain: Array
    offset: Array
    weights: Array | None
    stats: dict = field(default_factory=dict)
    identity: bool = False

    def take(self, frames: Sequence[int] | None, xp: Any) -> FramePlan:
        """Restrict the plan to some of its frames.

        Parameters
        ----------
        frames : sequence of int or None
            Positions of the frames to keep, in this plan's frame order; None keeps
            every frame.
        xp : namespace
            The array namespace of this plan's arrays.

        Returns
        -------
        FramePlan
            ``self`` when ``frames`` is None; else a plan whose ``gain``, ``offset``
            and ``weights`` have one row per entry of ``frames``, on the device of
            ``gain``, sharing ``stats`` and ``identity``.
        """
        if frames is None:
            return self
        idx = xp.asarray(list(frames), dtype=xp.int64, device=_device(self.gain))
        weights = None if self.weights is None else xp.take(self.weights, idx, axis=0)
        return FramePlan(xp.take(self.gain, idx, axis=0), xp.take(self.offset, idx, axis=0), weights,
                         self.stats, identity=self.identity)


@dataclass
class BandResult:
    """Outputs of one band (as in :class:`StackResult`), plus its counters.

    Attributes
    ----------
    image, weight_sum : array, shape (h, W, C), float32
        Combined value (NaN where no sample survived) and Σ weights of the survivors.
    coverage, rejected_low, rejected_high : array, shape (h, W, C), integer
        Survivors, and samples rejected below / above, per pixel.
    iterations : int
        Most rejection iterations any pixel of the band ran.
    n_valid, n_low, n_high : int
        Valid samples, and samples rejected low / high, summed over the band.
    uncertainty : array, shape (h, W, C), float32, or None
        Standard error of the combined value (NaN where fewer than two survived);
        None when not asked for.
    """

    image: Array
    weight_sum: Array
    coverage: Array
    rejected_low: Array
    rejected_high: Array
    iterations: int
    n_valid: int
    n_low: int
    n_high: int
    uncertainty: Array | None = None


def memory_factor(config: StackConfig) -> float:
    """Estimate the peak working memory of one band, in multiples of its float32 bytes.

    Parameters
    ----------
    config : StackConfig
        Its ``reject`` sets the factor (sorted copies, masks, rank arrays and float64
        temporaries differ between algorithms).

    Returns
    -------
    float
        Bytes of working memory per byte of the band's ``N·h·W·C`` float32 samples.
    """
    return _MEMORY_FACTOR.get(config.reject, _DEFAULT_MEMORY_FACTOR)


def rows_per_band(n_frames: int, width: int, channels: int, budget_bytes: int,
                  config: StackConfig, height: int | None = None) -> int:
    """Choose the rows per band so that one band's working memory fits ``budget_bytes``.

    Parameters
    ----------
    n_frames, width, channels : int
        Frames in the stack, and the width and channel count of each frame.
    budget_bytes : int
        Working memory one band may use, in bytes.
    config : StackConfig
        Its rejection sets the working memory per sample (:func:`memory_factor`).
    height : int, optional
        Frame height, the most rows a band can have.

    Returns
    -------
    int
        At least 1, even when one row alone is over budget; at most ``height`` when
        given.
    """
    row_bytes = max(1, n_frames * width * channels * 4) * memory_factor(config)
    rows = max(1, int(budget_bytes // row_bytes))
    return min(rows, height) if height is not None else rows


def _to_list(x: Array, xp: Any) -> list:
    return [float(v) for v in xp.reshape(xp.astype(x, xp.float64), (-1,))]


def plan_frames(stats: FrameSamples, config: StackConfig, *,
                frame_weights: Array | None = None) -> FramePlan:
    """Compute the gains, offsets and weights of every frame from its sub-sample.

    Parameters
    ----------
    stats : FrameSamples
        Sub-samples of all N frames, ``(N, C, M)``.
    config : StackConfig
        Its ``normalize``, ``weighting`` and ``reference_frame``.
    frame_weights : array, shape (N,) or (N, C), float, optional
        User weights per frame (or frame and channel), multiplied into the quality
        weights.

    Returns
    -------
    FramePlan
        ``(N, C)`` float32 gains, offsets and weights (None when every weight is
        equal) in the namespace and on the device of ``stats``, and their JSON-able
        record in ``stats``.

    Raises
    ------
    ValueError
        ``config.reference_frame`` is not a frame index.
    """
    xp = stats.xp
    if config.reference_frame >= stats.n_frames:
        msg = (f"`reference_frame` is {config.reference_frame} but only {stats.n_frames} frames "
               f"were given; choose an index below {stats.n_frames}")
        raise ValueError(msg)
    gain, offset = normalization(stats, config)
    weights = quality_weights(stats, gain, config)
    if frame_weights is not None:
        fw = xp.astype(frame_weights, xp.float32)
        fw = fw[:, None] if fw.ndim == 1 else fw
        fw = xp.broadcast_to(fw, gain.shape)
        weights = fw if weights is None else weights * fw
    info = {
        "normalize": config.normalize,
        "gains": [_to_list(gain[i, :], xp) for i in range(gain.shape[0])],
        "offsets": [_to_list(offset[i, :], xp) for i in range(offset.shape[0])],
        "weighting": config.weighting,
    }
    if weights is not None:
        info["weights"] = [_to_list(weights[i, :], xp) for i in range(weights.shape[0])]
        info["weight_min"] = float(xp.min(weights))
        info["weight_max"] = float(xp.max(weights))
    identity = bool(xp.all(gain == 1.0) and xp.all(offset == 0.0))
    return FramePlan(gain, offset, weights, info, identity=identity)


def stack_band(band: Array, *, config: StackConfig, plan: FramePlan,
               pixel_weights: Array | None = None, xp: Any, row_start: int = 0,
               full_height: int | None = None, col_start: int = 0, full_width: int | None = None,
               ops: ArrayOps | None = None, uncertainty: bool = True) -> BandResult:
    """Stack one band of rows.

    Parameters
    ----------
    band : array, shape (h, W, C, N), float32
        Rows of every frame, frames on the last axis; NaN = no data.
    config : StackConfig
        Rejection, combine and radial-weight settings.
    plan : FramePlan
        From :func:`plan_frames` on the same N frames.
    pixel_weights : array, shape (h, W, C, N) or (h, W, 1, N), optional
        Per-pixel weights of these rows (e.g. reprojection footprint × ALPHA).
    xp : namespace
        The array namespace of ``band``, ``plan`` and ``pixel_weights``.
    row_start, full_height : int
        Where these rows sit in the frame (``full_height`` defaults to h).
    col_start, full_width : int
        Where these columns sit in the frame (``full_width`` defaults to W). The radial
        weight map (``config.radial_weight``) is computed from the frame's row and
        column indices, so it does not depend on how the frame is cut into blocks.
    ops : ArrayOps, optional
        Native fast paths (default: those registered for the band's namespace).
    uncertainty : bool
        Compute the standard error map (:func:`~.uncertainty.standard_error`);
        False leaves ``BandResult.uncertainty`` None.

    Returns
    -------
    BandResult
        Arrays of shape ``(h, W, C)`` on the band's device (image NaN where no
        sample survived), and the band's counters as Python ints.
    """
    h, w, c, n = (int(v) for v in band.shape)
    if plan.identity:
        x = band
    else:
        x = band * xp.permute_dims(plan.gain, (1, 0)) + xp.permute_dims(plan.offset, (1, 0))
    weights = None
    if plan.weights is not None:
        weights = xp.permute_dims(plan.weights, (1, 0))[None, None, ...]
    if pixel_weights is not None:
        weights = pixel_weights if weights is None else weights * pixel_weights
    if config.radial_weight:
        radial = radial_weight_map(h, w, row_start=row_start, full_height=full_height, col_start=col_start,
                                   full_width=full_width, feather_fraction=config.radial_feather_fraction,
                                   shape_power=config.radial_shape_power, floor=config.radial_floor,
                                   xp=xp, device=_device(band))[:, :, None, None]
        weights = radial if weights is None else weights * radial
    p = h * w * c
    x = xp.reshape(x, (p, n))
    if weights is not None:
        weights = xp.reshape(xp.broadcast_to(weights, (h, w, c, n)), (p, n))
    samples = Samples(x, weights, xp=xp, ops=ops)
    rej = reject(samples, config)
    image, weight_sum, coverage = combine(samples, rej, config)
    se = xp.reshape(standard_error(samples, rej, config, image, coverage), (h, w, c)) if uncertainty else None
    n_low = xp.astype(rej.n_low, xp.int32)
    n_high = xp.astype(rej.n_high, xp.int32)
    counters = xp.stack([xp.max(rej.iterations) if p else xp.asarray(0, device=_device(x)),
                         xp.sum(samples.n_valid), xp.sum(rej.n_low), xp.sum(rej.n_high)])
    iterations, n_valid, low_total, high_total = (int(v) for v in counters)
    shape = (h, w, c)
    return BandResult(xp.reshape(image, shape), xp.reshape(weight_sum, shape),
                      xp.reshape(coverage, shape), xp.reshape(n_low, shape),
                      xp.reshape(n_high, shape), iterations, n_valid, low_total, high_total, se)


#: Names of the six per-pixel results (the order of the native stackers' ``out``).
RESULT_NAMES = ("image", "weight_sum", "coverage", "rejected_low", "rejected_high", "uncertainty")
#: The float32 ones among them (the others are int32 counts).
FLOAT_RESULTS = ("image", "weight_sum", "uncertainty")


def summary_stats(counters: Sequence[tuple[int, int, int, int]], *, config: StackConfig,
                  plan: FramePlan) -> dict[str, Any]:
    """Summarise a stack from its blocks' counters.

    Parameters
    ----------
    counters : sequence of (int, int, int, int)
        ``(iterations, n_valid, n_low, n_high)`` of every block.
    config : StackConfig
        The stack's configuration; its methods and κ are recorded.
    plan : FramePlan
        Its ``stats`` (gains, offsets, weights) are merged in.

    Returns
    -------
    dict
        The JSON-able ``StackResult.stats``: methods, κ, iterations used (the most
        of any block) and allowed, valid and rejected sample counts and fractions
        (``rejected_pct``), plus the plan's own stats. Fractions are 0 when no
        sample was valid.
    """
    n_valid = sum(c[1] for c in counters)
    n_low = sum(c[2] for c in counters)
    n_high = sum(c[3] for c in counters)
    denom = max(n_valid, 1)
    stats = {
        "reject": config.reject,
        "combine": config.combine,
        "kappa_low": config.kappa_low,
        "kappa_high": config.kappa_high,
        "iterations": max((c[0] for c in counters), default=0),
        "max_iters": config.effective_max_iters(),
        "valid_samples": n_valid,
        "rejected_low_count": n_low,
        "rejected_high_count": n_high,
        "rejected_low_fraction": n_low / denom,
        "rejected_high_fraction": n_high / denom,
        "rejected_pct": 100.0 * (n_low + n_high) / denom,
    }
    stats.update(plan.stats)
    return stats


def finish_stack(outputs: dict[str, Array], stats: dict[str, Any], *, config: StackConfig,
                 mono: bool) -> StackResult:
    """Package :func:`stack_bands` outputs as a :class:`StackResult`.

    Applies the optional post-stack RGB equalisation (``config.rgb_equalize``) and
    drops the channel axis of mono stacks.

    Parameters
    ----------
    outputs : dict of str to array
        The ``(H, W, C)`` arrays of :func:`stack_bands`, by name.
    stats : dict
        Its statistics; ``stats["rgb_equalization"]`` receives the equalisation's
        decision and gains (the dict is updated in place).
    config : StackConfig
        Its ``rgb_equalize*`` fields.
    mono : bool
        The frames had no channel axis (C is 1): results become ``(H, W)``.

    Returns
    -------
    StackResult
        The arrays in the namespace and on the device of ``outputs``; None for
        outputs that were not kept.
    """
    def _get(name: str) -> Array | None:
        out = outputs.get(name)
        return out[..., 0] if (out is not None and mono) else out

    image, stats["rgb_equalization"] = poststack_rgb_equalization(_get("image"), config, mono=mono)
    uncertainty = _get("uncertainty")
    eq = stats["rgb_equalization"]
    if uncertainty is not None and eq.get("applied"):
        # The equalisation scales each channel: so does its standard error.
        xp = array_namespace(uncertainty)
        gains = xp.asarray([eq["gain_r"], eq["gain_g"], eq["gain_b"]], dtype=uncertainty.dtype,
                           device=_device(uncertainty))
        uncertainty = uncertainty * gains
    return StackResult(image, _get("weight_sum"), _get("coverage"), _get("rejected_low"), _get("rejected_high"),
                       stats, uncertainty)
