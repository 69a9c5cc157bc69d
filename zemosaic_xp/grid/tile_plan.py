"""Frame-global parameters of one tile: normalisation, quality and exposure weights.

The frames of a tile each cover a different part of it. Matching percentiles of
different sky (what ``plan_frames`` does for a stack of aligned frames) would bias
the gains wherever the sky is not uniform, and leave steps at frame edges inside
the tile. So the normalisation here is pairwise on *common pixels*: a maximum-
overlap spanning tree is grown from the frame covering most of the tile, and each
new frame is normalised against the frame it overlaps most, with the core's own
method (``config.normalize`` through :func:`~zemosaic_xp.core.normalize.normalization`)
on the pixels both have; the pairwise maps compose along the tree. Quality weights
come from the core too (:func:`~zemosaic_xp.core.weights.quality_weights`, a clipped
σ, so stars do not count as noise), multiplied by the exposure of each frame.

Everything is computed from one sub-sample of the tile (:meth:`PatchStore.samples`),
so the plan never depends on how the tile is later cut into bands.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..core.config import StackConfig
from ..core.framestats import FrameSamples
from ..core.normalize import normalization
from ..core.stack import FramePlan
from ..core.weights import quality_weights

__all__ = ["plan_tile_frames", "MIN_PAIR_SAMPLES"]

logger = logging.getLogger(__name__)

#: Fewest common sample pixels for a pairwise fit; below it a frame is matched on
#: its own pixels against the tile reference (the classic, non-pairwise estimate).
MIN_PAIR_SAMPLES = 64


def _spanning_tree(valid: np.ndarray) -> tuple[int, list[tuple[int, int, int]]]:
    """Reference frame and (parent, child, overlap) edges of a max-overlap spanning tree.

    Deterministic: ties go to the lowest frame index.
    """
    n = valid.shape[0]
    counts = valid.sum(axis=1)
    ref = int(np.argmax(counts))
    v = valid.astype(np.float32)
    overlap = (v @ v.T).astype(np.int64)  # exact: counts < 2**24
    attached = np.zeros(n, dtype=bool)
    attached[ref] = True
    best = overlap[ref].copy()
    parent = np.full(n, ref, dtype=np.int64)
    edges = []
    for _ in range(n - 1):
        score = np.where(attached, -1, best)
        child = int(np.argmax(score))
        edges.append((int(parent[child]), child, int(best[child])))
        attached[child] = True
        better = (overlap[child] > best) & ~attached
        best = np.where(better, overlap[child], best)
        parent = np.where(better, child, parent)
    return ref, edges


def _pair_map(samples: np.ndarray, parent: int, child: int, common: np.ndarray | None,
              config: StackConfig, xp: Any) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset ``(C,)`` mapping ``child`` onto ``parent`` with the core's method."""
    pair = samples[[parent, child]]
    if common is not None:
        pair = pair[:, :, common]
    stats = FrameSamples(xp.asarray(np.ascontiguousarray(pair)), xp=xp)
    gain, offset = normalization(stats, config.replace(reference_frame=0))
    return np.asarray(gain)[1].astype(np.float64), np.asarray(offset)[1].astype(np.float64)


def _normalise(samples: np.ndarray, config: StackConfig, xp: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    n, c, _ = samples.shape
    gain = np.ones((n, c), dtype=np.float64)
    offset = np.zeros((n, c), dtype=np.float64)
    if config.normalize == "none" or n == 1:
        return gain, offset, {"reference": 0, "pairwise": 0, "fallback": 0}
    valid = np.all(np.isfinite(samples), axis=1)
    ref, edges = _spanning_tree(valid)
    pairwise = fallback = 0
    for parent, child, n_common in edges:
        if n_common >= MIN_PAIR_SAMPLES:
            g, o = _pair_map(samples, parent, child, valid[parent] & valid[child], config, xp)
            # child -> parent units -> reference units (the maps are affine and compose)
            gain[child] = gain[parent] * g
            offset[child] = gain[parent] * o + offset[parent]
            pairwise += 1
        else:
            g, o = _pair_map(samples, ref, child, None, config, xp)
            gain[child], offset[child] = g, o
            fallback += 1
    return gain, offset, {"reference": ref, "pairwise": pairwise, "fallback": fallback}


def plan_tile_frames(samples: np.ndarray, exposures: np.ndarray, config: StackConfig, *,
                     xp: Any) -> FramePlan:
    """Normalisation and weights of a tile's frames from their common sub-sample.

    Parameters
    ----------
    samples : ndarray, shape (N, C, M), float32
        The same M tile pixels for every frame; NaN where a frame has no data.
    exposures : ndarray, shape (N,)
        Exposure of each frame in seconds (the user frame weight).
    config : StackConfig
        ``normalize`` and ``weighting`` are used (``reference_frame`` is not: the
        reference is the frame covering most of the tile).
    xp : namespace
        The host array namespace (NumPy through array-api-compat).

    Returns
    -------
    FramePlan
        ``gain``/``offset`` ``(N, C)`` mapping every frame onto the reference frame's
        units, ``weights`` ``(N, C)`` = quality weight × exposure (None when both are
        uniform), and ``stats`` as ``plan_frames`` records them plus the tree summary.
    """
    gain, offset, tree = _normalise(samples, config, xp)
    gain_x = xp.asarray(gain.astype(np.float32))
    offset_x = xp.asarray(offset.astype(np.float32))
    stats = FrameSamples(xp.asarray(samples), xp=xp)
    weights = quality_weights(stats, gain_x, config)
    exp = np.asarray(exposures, dtype=np.float32)
    if not np.all(exp == exp[0]):
        fw = xp.broadcast_to(xp.asarray(exp)[:, None], gain_x.shape)
        weights = fw if weights is None else weights * fw
    info = {
        "normalize": config.normalize,
        "normalize_scope": "pairwise_common_pixels",
        "normalize_reference": tree["reference"],
        "normalize_pairwise": tree["pairwise"],
        "normalize_fallback": tree["fallback"],
        "gains": gain.astype(np.float32).tolist(),
        "offsets": offset.astype(np.float32).tolist(),
        "weighting": config.weighting,
    }
    if weights is not None:
        w = np.asarray(weights)
        info["weights"] = w.tolist()
        info["weight_min"] = float(w.min())
        info["weight_max"] = float(w.max())
    return FramePlan(gain_x, offset_x, weights, info)
