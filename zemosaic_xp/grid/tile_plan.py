"""Frame-global parameters of one tile: normalisation, quality and exposure weights.

The frames of a tile each cover a different part of it. Matching percentiles of
different sky (what ``plan_frames`` does for a stack of aligned frames) would bias
the gains wherever the sky is not uniform, and leave steps at frame edges inside
the tile. So the normalisation here is pairwise on *common pixels*: every frame is
fitted against the frames it overlaps most, with the core's own method
(``config.normalize`` through :func:`~zemosaic_xp.core.normalize.normalization`) on
the blocks both cover, and the pairwise maps are solved globally (robust least
squares, log-gains then offsets) onto the frame covering most of the tile, so the
error of one pair is averaged with all the others instead of piling up. The samples are
small block means (:meth:`PatchStore.block_samples`): bilinear reprojection smooths
each frame's noise by a different amount (it depends on the sub-pixel phase), which
would otherwise bias every percentile-based gain by several percent.

Quality weights come from the core too (:func:`~zemosaic_xp.core.weights.quality_weights`,
a 3σ-clipped σ), on :func:`frame_noise_samples` of each *original* frame: differences of
neighbouring pixels, which hold the noise but neither the sky gradient nor (after the
clip) the stars, and which reprojection has not smoothed. They are multiplied by the
exposure of each frame. A frame gets the same weight in every tile it touches.

Everything is computed from sub-samples fixed before any band is stacked, so the plan
never depends on how the tile is later cut into bands.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..core.config import StackConfig
from ..core.framestats import FrameSamples
from ..core.normalize import normalization
from ..core.stack import FramePlan
from ..core.weights import quality_weights

__all__ = ["plan_tile_frames", "frame_noise_samples", "MIN_PAIR_SAMPLES", "NORM_BLOCK_PX"]

logger = logging.getLogger(__name__)

#: Fewest common sample pixels for a pairwise fit; below it a frame is matched on
#: its own pixels against the tile reference (the classic, non-pairwise estimate).
MIN_PAIR_SAMPLES = 64
#: Side of the blocks averaged into normalisation samples (1 = single pixels, see above).
NORM_BLOCK_PX = 1
# Partners per frame in the pairwise fit, and the robust re-weighting of the solve.
_MAX_PARTNERS = 4
_IRLS_ITERATIONS = 4
_HUBER_K = 1.345


def frame_noise_samples(data: np.ndarray, max_samples: int) -> np.ndarray:
    """Noise samples of one frame: horizontal neighbour differences / √2, ``(C, M)``, float32.

    For white noise of σ they have σ; a smooth gradient cancels out and stars are
    rare outliers that the clipped σ of the weights drops. A regular stride keeps at
    most ``max_samples`` per channel (all when 0). NaN where a pixel has no data.
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


def _pair_list(valid: np.ndarray) -> tuple[int, np.ndarray, list[tuple[int, int, int]]]:
    """Reference frame, overlap matrix and the pairs to fit.

    The reference covers most blocks (ties: lowest index). Pairs: every frame with
    its ``_MAX_PARTNERS`` largest overlaps, plus the edges of a maximum-overlap
    spanning tree from the reference (so the pair graph connects whatever can be
    connected), each with at least ``MIN_PAIR_SAMPLES`` common blocks.
    """
    n = valid.shape[0]
    ref = int(np.argmax(valid.sum(axis=1)))
    v = valid.astype(np.float32)
    overlap = np.rint(v @ v.T).astype(np.int64)  # exact: counts < 2**24
    np.fill_diagonal(overlap, 0)
    chosen: set[tuple[int, int]] = set()
    for i in range(n):
        order = np.argsort(-overlap[i], kind="stable")[:_MAX_PARTNERS]
        chosen.update((min(i, int(j)), max(i, int(j))) for j in order if overlap[i, j] >= MIN_PAIR_SAMPLES)
    attached = np.zeros(n, dtype=bool)
    attached[ref] = True
    best, parent = overlap[ref].copy(), np.full(n, ref)
    for _ in range(n - 1):
        child = int(np.argmax(np.where(attached, -1, best)))
        if best[child] >= MIN_PAIR_SAMPLES:
            chosen.add((min(child, int(parent[child])), max(child, int(parent[child]))))
        attached[child] = True
        better = (overlap[child] > best) & ~attached
        best, parent = np.where(better, overlap[child], best), np.where(better, child, parent)
    return ref, overlap, [(i, j, int(overlap[i, j])) for i, j in sorted(chosen)]


def _pair_map(samples: np.ndarray, first: int, second: int, common: np.ndarray | None,
              config: StackConfig, xp: Any) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset ``(C,)`` mapping ``second`` onto ``first`` with the core's method."""
    pair = samples[[first, second]]
    if common is not None:
        pair = pair[:, :, common]
    stats = FrameSamples(xp.asarray(np.ascontiguousarray(pair)), xp=xp)
    gain, offset = normalization(stats, config.replace(reference_frame=0))
    return np.asarray(gain)[1].astype(np.float64), np.asarray(offset)[1].astype(np.float64)


def _connected(n: int, ref: int, pairs: list[tuple[int, int, int]]) -> np.ndarray:
    linked = np.zeros(n, dtype=bool)
    linked[ref] = True
    changed = True
    while changed:
        changed = False
        for i, j, _ in pairs:
            if linked[i] != linked[j]:
                linked[i] = linked[j] = changed = True
    return linked


def _irls(design: np.ndarray, rhs: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted least squares with Huber re-weighting (a few bad pairs do not pull the fit)."""
    w = weight.copy()
    sol = np.zeros(design.shape[1])
    for _ in range(_IRLS_ITERATIONS):
        sw = np.sqrt(w)
        sol = np.linalg.lstsq(design * sw[:, None], rhs * sw, rcond=None)[0]
        resid = rhs - design @ sol
        scale = 1.4826 * np.median(np.abs(resid)) + 1e-12
        r = np.abs(resid) / (_HUBER_K * scale)
        w = weight * np.where(r <= 1.0, 1.0, 1.0 / np.maximum(r, 1e-12))
    return sol


def _solve(n: int, ref: int, pairs: list[tuple[int, int, int]], maps: dict, linked: np.ndarray,
           channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Gains and offsets onto the reference from all pairwise maps: x_i ≈ g_ij·x_j + o_ij."""
    gain = np.ones((n, channels))
    offset = np.zeros((n, channels))
    unknown = [k for k in range(n) if linked[k] and k != ref]
    if not unknown:
        return gain, offset
    col = {k: c for c, k in enumerate(unknown)}
    design = np.zeros((len(pairs), len(unknown)))
    for row, (i, j, _) in enumerate(pairs):
        if j in col:
            design[row, col[j]] += 1.0
        if i in col:
            design[row, col[i]] -= 1.0
    weight = np.asarray([float(cnt) for _, _, cnt in pairs])
    for ch in range(channels):
        g_ij = np.asarray([maps[(i, j)][0][ch] for i, j, _ in pairs])
        o_ij = np.asarray([maps[(i, j)][1][ch] for i, j, _ in pairs])
        log_g = _irls(design, np.log(g_ij), weight)  # log g_j − log g_i = log g_ij
        gain[unknown, ch] = np.exp(log_g)
        g_first = np.asarray([gain[i, ch] for i, _, _ in pairs])
        offset[unknown, ch] = _irls(design, g_first * o_ij, weight)  # o_j − o_i = g_i·o_ij
    return gain, offset


def _normalise(samples: np.ndarray, config: StackConfig, xp: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    n, c, _ = samples.shape
    gain = np.ones((n, c), dtype=np.float64)
    offset = np.zeros((n, c), dtype=np.float64)
    if config.normalize == "none" or n == 1:
        return gain, offset, {"reference": 0, "pairs": 0, "fallback": 0}
    valid = np.all(np.isfinite(samples), axis=1)
    ref, _, pairs = _pair_list(valid)
    maps = {}
    for i, j, _ in pairs:
        maps[(i, j)] = _pair_map(samples, i, j, valid[i] & valid[j], config, xp)
    pairs = [p for p in pairs if np.all(maps[p[:2]][0] > 0)]  # a degenerate fit carries no gain
    linked = _connected(n, ref, pairs)
    gain, offset = _solve(n, ref, pairs, maps, linked, c)
    fallback = [k for k in range(n) if not linked[k]]
    for k in fallback:  # no usable overlap: the frame's own blocks against the reference's
        gain[k], offset[k] = _pair_map(samples, ref, k, None, config, xp)
    return gain, offset, {"reference": ref, "pairs": len(pairs), "fallback": len(fallback)}


def plan_tile_frames(samples: np.ndarray, noise: list[np.ndarray], exposures: np.ndarray, config: StackConfig,
                     *, xp: Any) -> FramePlan:
    """Normalisation and weights of a tile's frames.

    Parameters
    ----------
    samples : ndarray, shape (N, C, M), float32
        The same M tile pixels (or blocks) for every frame (:meth:`PatchStore.block_samples`);
        NaN where a frame does not cover a block.
    noise : list of N ndarrays, shape (C, M_i), float32
        :func:`frame_noise_samples` of each original frame.
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
    stats = FrameSamples(xp.asarray(_stack_ragged(noise)), xp=xp)
    weights = quality_weights(stats, gain_x, config)
    exp = np.asarray(exposures, dtype=np.float32)
    if not np.all(exp == exp[0]):
        fw = xp.broadcast_to(xp.asarray(exp)[:, None], gain_x.shape)
        weights = fw if weights is None else weights * fw
    info = {
        "normalize": config.normalize,
        "normalize_scope": "pairwise_common_blocks",
        "normalize_reference": tree["reference"],
        "normalize_pairs": tree["pairs"],
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
