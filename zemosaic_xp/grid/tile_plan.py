"""Frame plan of one tile: the survey's frame normalisation, quality and exposure weights.

Gains and offsets come from :mod:`.normalise` (one fit for the whole survey, so every
tile applies the same map to a frame). Quality weights come from the core
(:func:`~zemosaic_xp.core.weights.quality_weights`, a 3σ-clipped σ scaled by the gain)
on :func:`frame_noise_samples` of each *original* frame: differences of neighbouring
pixels, which hold the noise but neither the sky gradient nor (after the clip) the
stars, and which reprojection has not smoothed. They are multiplied by the exposure of
each frame, and a frame keeps the same weight relative to the others in every tile.

Everything is fixed before any band is stacked, so the plan never depends on how the
tile is cut into bands.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.config import StackConfig
from ..core.framestats import FrameSamples
from ..core.pipeline import FramePlan
from ..core.weights import quality_weights

__all__ = ["plan_tile_frames", "frame_noise_samples"]


def frame_noise_samples(data: np.ndarray, max_samples: int) -> np.ndarray:
    """Take noise samples of one frame: horizontal neighbour differences / √2.

    For white noise of σ they have σ; a smooth gradient cancels out and stars are
    rare outliers that the clipped σ of the weights drops.

    Parameters
    ----------
    data : ndarray, shape (H, W, C), float32
        The original frame (not reprojected), in ADU; NaN = no data.
    max_samples : int
        A regular stride keeps at most this many samples per channel (all when <= 0).

    Returns
    -------
    ndarray, shape (C, M), float32, on the host
        In ADU; NaN where either pixel of a pair has no data.
    """
    diff = (data[:, 1:, :] - data[:, :-1, :]) * np.float32(1.0 / np.sqrt(2.0))
    flat = diff.reshape(-1, data.shape[2])
    step = 1 if max_samples <= 0 else max(1, math.ceil(flat.shape[0] / max_samples))
    return np.ascontiguousarray(flat[::step].T, dtype=np.float32)


def _stack_ragged(rows: list[np.ndarray]) -> np.ndarray:
    """(C, M_i) arrays → (N, C, max M), NaN-padded."""
    m = max(r.shape[1] for r in rows)
    out = np.full((len(rows), rows[0].shape[0], m), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, :, : r.shape[1]] = r
    return out


def plan_tile_frames(gains: np.ndarray, offsets: np.ndarray, noise: list[np.ndarray], exposures: np.ndarray,
                     config: StackConfig, *, xp: Any) -> FramePlan:
    """Frame plan of a tile's frames.

    Parameters
    ----------
    gains, offsets : ndarray, shape (N, C)
        Survey normalisation of each frame (:func:`~.normalise.normalise_frames`).
    noise : list of N ndarrays, shape (C, M_i), float32
        :func:`frame_noise_samples` of each original frame.
    exposures : ndarray, shape (N,)
        Exposure of each frame in seconds (the user frame weight).
    config : StackConfig
        ``weighting`` is used here (the normalisation was fitted beforehand).
    xp : namespace
        The host array namespace (NumPy through array-api-compat).

    Returns
    -------
    FramePlan
        ``gain``/``offset`` ``(N, C)`` float32, ``weights`` ``(N, C)`` = quality weight ×
        exposure (None when both are uniform), and ``stats`` as ``plan_frames`` records them.
    """
    gain_x = xp.asarray(np.asarray(gains, dtype=np.float32))
    offset_x = xp.asarray(np.asarray(offsets, dtype=np.float32))
    stats = FrameSamples(xp.asarray(_stack_ragged(noise)), xp=xp)
    weights = quality_weights(stats, gain_x, config)
    exp = np.asarray(exposures, dtype=np.float32)
    if not np.all(exp == exp[0]):
        fw = xp.broadcast_to(xp.asarray(exp)[:, None], gain_x.shape)
        weights = fw if weights is None else weights * fw
    info = {
        "normalize": config.normalize,
        "normalize_scope": "survey",
        "gains": np.asarray(gains, dtype=np.float32).tolist(),
        "offsets": np.asarray(offsets, dtype=np.float32).tolist(),
        "weighting": config.weighting,
    }
    if weights is not None:
        w = np.asarray(weights)
        info["weights"] = w.tolist()
        info["weight_min"] = float(w.min())
        info["weight_max"] = float(w.max())
    return FramePlan(gain_x, offset_x, weights, info)
