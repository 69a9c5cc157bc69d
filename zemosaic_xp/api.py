"""Public ``stack()``: the core pipeline on a chosen backend, with memory-sized bands."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Callable

from .backends import Backend, backend_of, default_memory_budget, select_backend, to_backend
from .core.config import StackConfig
from .core.in_memory import stack_frames
from .core.pipeline import StackResult
from .nddata import frames_from_nddata, is_nddata

__all__ = ["stack"]

logger = logging.getLogger(__name__)

def _first(frames: Any) -> Any:
    if isinstance(frames, (list, tuple)):
        if not frames:
            msg = "`frames` is empty: stacking needs at least one frame"
            raise ValueError(msg)
        return frames[0]
    return frames


def _from_nddata(frames: Any, config: StackConfig | None, weights: Any) -> tuple[Any, Any, Any]:
    """NDData frames as an array with NaN for masked pixels, their unit, and 1/σ² weights if asked."""
    uncertainty_weights = getattr(config, "weighting", None) == "uncertainty"
    if isinstance(frames, (list, tuple)) and frames and all(is_nddata(f) for f in frames):
        data, unit, ivar = frames_from_nddata(frames, weights=uncertainty_weights)
        if ivar is not None:
            weights = ivar if weights is None else ivar * _per_pixel(weights, ivar)
        return data, unit, weights
    if uncertainty_weights:
        msg = ("weighting='uncertainty' needs astropy NDData/CCDData frames with an uncertainty "
               "(StdDevUncertainty, VarianceUncertainty or InverseVariance); got plain arrays")
        raise ValueError(msg)
    return frames, None, weights


def _per_pixel(weights: Any, ivar: Any) -> Any:
    """User weights (N,), (N, C) or per pixel, broadcast against per-pixel ``ivar`` (N, H, W[, C])."""
    import numpy as np

    w = np.asarray(weights, dtype=np.float32)
    if w.ndim == 1:
        return w.reshape((-1,) + (1,) * (ivar.ndim - 1))
    if w.ndim == 2 and ivar.ndim == 4:
        return w[:, None, None, :]
    return w


def _mask_cosmics(frames: Any, config: StackConfig, target: Backend) -> tuple[Any, dict]:
    """The ``cosmic`` pre-pass: frames to the host, hits to NaN, back to ``target``."""
    import numpy as np

    from .backends import to_host
    from .io.cosmic import mask_cosmics

    host = [np.asarray(to_host(f)) for f in frames] if isinstance(frames, (list, tuple)) else None
    if host is not None and len({f.shape for f in host}) > 1:
        return frames, {}  # stack_frames reports the mismatched shapes
    host = np.stack(host) if host is not None else np.asarray(to_host(frames))
    masked, info = mask_cosmics(host.astype(np.float32, copy=False), mode=config.cosmic,
                                min_depth=config.cosmic_min_depth, method=config.cosmic_method)
    if masked is not host:
        frames = to_backend(masked, target)
    logger.debug("[P3] cosmic=%s: %d px masked in %d frame(s) searched (%.3f s)", config.cosmic,
                 info["cosmic_masked_px"], info["cosmic_frames_searched"], info["time_cosmic_sec"])
    return frames, info


def stack(frames: Any | Sequence[Any], /, *, config: StackConfig | None = None,
          weights: Any | None = None, backend: str | Backend | None = None,
          memory_budget_bytes: int | None = None,
          progress_callback: Callable[..., Any] | None = None, uncertainty: bool = True) -> StackResult:
    """Stack aligned frames: normalise, weight, reject outliers, combine.

    Parameters
    ----------
    frames : array, shape (N, H, W) or (N, H, W, C); or sequence of (H, W[, C]) arrays
        Aligned frames (NumPy, CuPy or torch), float or integer; NaN and ±inf mean "no
        data". Or a sequence of astropy ``NDData`` / ``CCDData``: masked pixels are "no
        data", every frame must have the same unit (the result keeps it), and
        ``config.weighting="uncertainty"`` weights each pixel by ``1/σ²`` of its
        uncertainty (``StdDevUncertainty``, ``VarianceUncertainty``,
        ``InverseVariance``), as ccdproc does.
    config : StackConfig, optional
        Methods and parameters; default ZeMosaic's (linear_fit, noise_variance,
        winsorized_sigma_clip, mean). With ``cosmic`` on, the frames go to the host
        for the cosmic-ray masks (:func:`zemosaic_xp.io.cosmic.mask_cosmics`) and
        back; ``stats`` then holds ``cosmic_masked_px`` and ``time_cosmic_sec``.
    weights : array, optional
        User weights, shape (N,), (N, C), (N, H, W) or (N, H, W, C); multiplied with
        the quality weights. A weight of 0 excludes the sample.
    backend : str or Backend, optional
        Where to compute (``"numpy"``, ``"cupy"``, ``"torch"``, ``"torch:cuda"``,
        ``"auto"``). Default: the backend of ``frames``, and the result stays there.
    memory_budget_bytes : int, optional
        Working memory of one row band; default 25 % of the backend's free memory
        (at most 256 MiB on CPU, 4 GiB on GPU). The result does not depend on it.
    progress_callback : callable, optional
        ZeMosaic protocol ``cb(key, progress, level, **kw)``; receives ``STAGE_PROGRESS``.
    uncertainty : bool
        Compute ``StackResult.uncertainty``, the standard error of each combined pixel
        (default True; docs/algorithms.md "Uncertainty map").

    Returns
    -------
    StackResult
        ``image``, ``weight_sum``, ``coverage``, ``rejected_low``, ``rejected_high``
        and ``uncertainty`` of shape (H, W) or (H, W, C) on the chosen backend, and
        ``stats``.

    Raises
    ------
    ValueError, TypeError
        Empty input, mismatched frame shapes, non-numeric data, bad weights or config;
        NDData frames of different units; ``weighting="uncertainty"`` without NDData
        uncertainties.
    """
    _first(frames)
    frames, unit, weights = _from_nddata(frames, config, weights)
    first = _first(frames)
    if backend is None:
        target = backend_of(first)
    else:
        target = select_backend(backend)
        try:
            same = backend_of(first).name == target.name
        except TypeError:
            same = False
        if not same:
            if isinstance(frames, (list, tuple)):
                frames = [to_backend(f, target) for f in frames]
            else:
                frames = to_backend(frames, target)
            if weights is not None and not isinstance(weights, (list, tuple)):
                weights = to_backend(weights, target)
    if memory_budget_bytes is None:
        memory_budget_bytes = default_memory_budget(target)
    elif isinstance(memory_budget_bytes, bool) or not isinstance(memory_budget_bytes, int) or memory_budget_bytes <= 0:
        msg = f"`memory_budget_bytes` must be a positive integer, got {memory_budget_bytes!r}"
        raise ValueError(msg)
    cosmic_info: dict = {}
    if getattr(config, "cosmic", "off") != "off":  # a bad `config` is reported by stack_frames
        frames, cosmic_info = _mask_cosmics(frames, config, target)
    result = stack_frames(frames, config=config, weights=weights,
                          memory_budget_bytes=memory_budget_bytes,
                          progress_callback=progress_callback, uncertainty=uncertainty)
    result.unit = unit
    if unit is not None:
        result.stats["unit"] = str(unit)
    result.stats.update(cosmic_info)
    result.stats["backend"] = target.name
    result.stats["memory_budget_bytes"] = int(memory_budget_bytes)
    return result
