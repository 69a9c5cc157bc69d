"""Survey-wide frame normalisation: one gain and offset per frame and channel, for every tile.

Normalising the frames of each tile on their own would give every tile its own
errors: a frame's offset would be estimated slightly differently in two neighbouring
tiles and the mosaic would show steps where the tiles meet. So the frames are
normalised once, for the whole survey, before any tile is stacked, and every tile
applies the same maps.

1. **Samples.** A regular stride over the global canvas fixes sample positions; each
   frame is interpolated (bilinear, as the reprojection does) at the positions inside
   its footprint (ALPHA = 0 and NaN excluded). Frames sampled at the same position see
   the same sky.
2. **Pairs.** Each frame is fitted against the frames sharing most positions with it,
   with the core's own method (``config.normalize`` through
   :func:`~zemosaic_xp.core.normalize.normalization`) on their common positions only:
   matching percentiles of *different* sky would bias every gain where the sky is not
   uniform.
3. **Global solve.** The pairwise gains are solved together (robust, Huber-reweighted
   least squares on log-gains, :func:`zemosaic_xp.mosaic.robust.solve_graph`, the solver
   of the tile photometry) onto the frame with the most overlap, so the error of one
   pair is averaged with all the others; then, when the method has an additive part, the
   offsets from the paired differences of the gain-corrected samples (see :func:`_solve`).

The result does not depend on tiles, bands or workers.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

from ..core.config import StackConfig
from ..core.framestats import FrameSamples
from ..core.nanstats import MAD_TO_SIGMA
from ..core.normalize import normalization
from .geometry import GlobalGrid
from .point_threads import pixel_to_world, sample_planes, world_to_pixel

__all__ = ["FrameNormalisation", "normalise_frames", "sample_frame", "MIN_PAIR_SAMPLES"]

logger = logging.getLogger(__name__)

#: Fewest common positions for a pairwise fit.
MIN_PAIR_SAMPLES = 64
_MAX_PARTNERS = 4
_PAIR_CLIP_ROUNDS = 2
_PAIR_CLIP_SIGMA = 5.0
# The frame graph's robust solve: Huber threshold 1.345 (95 % efficiency on Gaussian
# residuals) on residuals of one common scale (the weights only count common
# positions), four re-weighted solves.
_SOLVE = {"huber_c": 1.345, "standardize": False, "max_iters": 4}
# Positions per frame: enough for percentiles to ~1e-3 of the span; the parent holds
# them all (C + 2 numbers each), so very large surveys get fewer per frame.
_SAMPLES_PER_FRAME = 16384
_SAMPLE_MEMORY_BYTES = 64 * 2**20


@dataclass
class FrameNormalisation:
    """Gain and offset of every frame onto the survey reference: ``x' = gain·x + offset``.

    Attributes
    ----------
    gains, offsets : ndarray, shape (N, C), float64
        Per frame (row = ``FrameInfo.index``) and channel, in ADU for the offsets.
    reference : int
        Frame index with gain 1 and offset 0.
    info : dict
        ``pairs`` fitted, ``unlinked`` frames (no usable overlap: identity), samples.
    """

    gains: np.ndarray
    offsets: np.ndarray
    reference: int
    info: dict = field(default_factory=dict)


def _sample_step(grid: GlobalGrid, per_frame: int) -> int:
    area = float(np.median([f.shape[0] * f.shape[1] * (f.pixel_scale_deg / grid.pixel_scale_deg) ** 2
                            for f in grid.frames]))
    return max(1, math.ceil(area / max(1, per_frame)))


def _positions_in(footprint: tuple[float, float, float, float], width: int, height: int, step: int) -> np.ndarray:
    """Flat canvas indices (multiples of ``step``) inside a footprint's bounding box, ascending.

    The multiples of ``step`` between the box's first and last pixel, less those
    outside its columns: about ``rows × width / step`` candidates instead of every
    pixel of the box (5x faster on the small survey's frames).
    """
    xmin, xmax, ymin, ymax = footprint
    x0, x1 = max(0, math.floor(xmin + 0.5)), min(width, math.floor(xmax + 0.5) + 1)
    y0, y1 = max(0, math.floor(ymin + 0.5)), min(height, math.floor(ymax + 0.5) + 1)
    if x0 >= x1 or y0 >= y1:
        return np.zeros(0, dtype=np.int64)
    first = y0 * width + x0
    flat = np.arange(-(-first // step) * step, (y1 - 1) * width + x1, step, dtype=np.int64)
    column = flat % width
    return flat[(column >= x0) & (column < x1)]


def sample_frame(path: str, canvas_header: str, positions: np.ndarray, width: int, keep: bool = False,
                 threads: int = 1) -> np.ndarray:
    """Sample one frame bilinearly at canvas positions.

    Runs anywhere (worker processes too): reads the frame and its WCS itself, through
    the process's frame cache (:mod:`~zemosaic_xp.io.framecache`).

    Parameters
    ----------
    path : str
        The frame's FITS file.
    canvas_header : str
        The canvas WCS as a header string (:meth:`GlobalGrid.header_string`).
    positions : ndarray, shape (M,), int32 or int64
        Flat canvas indices ``y·width + x`` to sample.
    width : int
        Canvas width in px.
    keep : bool
        Add the frame's pixels to the frame cache for the tiles this process makes
        next (within its budget). Default False: read without caching them.
    threads : int
        Threads for the transforms and the samples (:mod:`.point_threads`; the same
        values for any count).

    Returns
    -------
    ndarray, shape (C, M), float32, on the host
        The frame's values in ADU, interpolated as the reprojection does; NaN where the
        position falls outside the frame, where a pixel the interpolation uses is NaN,
        or where the interpolated ALPHA is 0.
    """
    from ..io.framecache import FRAMES

    entry, planes = FRAMES.planes(path, keep=keep)
    channels = entry.source.channels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        canvas = FRAMES.canvas_wcs(canvas_header)
        ys, xs = np.divmod(positions, width)
        lon, lat = pixel_to_world(canvas, xs.astype(np.float64), ys.astype(np.float64), threads=threads)
        fx, fy = world_to_pixel(entry.wcs, lon, lat, threads=threads)
    out = np.empty((channels + entry.source.has_alpha, positions.size), dtype=np.float32)
    cvals = [np.nan] * channels + [0.0] * entry.source.has_alpha
    sample_planes([planes[c] for c in range(out.shape[0])], fy, fx, list(out), cvals, threads=threads)
    if entry.source.has_alpha:
        alpha, out = out[channels], out[:channels]
        out[:, ~(alpha > 0)] = np.nan
    return out


def _pair_map(vi: np.ndarray, vj: np.ndarray, config: StackConfig, xp: Any) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset ``(C,)`` mapping frame j's samples onto frame i's (same positions).

    The core's method is fitted, then refitted without the positions whose paired
    residual ``x_i − (g·x_j + o)`` is beyond 5σ (MAD) in any channel: a satellite trail
    or a cosmic ray in one frame of the pair would otherwise shift its percentiles.
    """
    keep = np.ones(vi.shape[1], dtype=bool)
    gain = offset = None
    for _ in range(_PAIR_CLIP_ROUNDS):
        stats = FrameSamples(xp.asarray(np.ascontiguousarray(np.stack([vi[:, keep], vj[:, keep]]))), xp=xp)
        # Percentiles, not the paired fit: the samples are interpolated from each
        # frame's own pixel grid, so stars do not pair exactly (issue 17 measured it).
        g, o = normalization(stats, config.replace(reference_frame=0), paired=False)
        gain, offset = np.asarray(g)[1].astype(np.float64), np.asarray(o)[1].astype(np.float64)
        resid = vi - (gain[:, None] * vj + offset[:, None])
        centre = np.median(resid[:, keep], axis=1, keepdims=True)
        scale = MAD_TO_SIGMA * np.median(np.abs(resid[:, keep] - centre), axis=1, keepdims=True) + 1e-12
        new = np.all(np.abs(resid - centre) <= _PAIR_CLIP_SIGMA * scale, axis=0)
        if np.array_equal(new, keep) or new.sum() < MIN_PAIR_SAMPLES:
            break
        keep = new
    return gain, offset


def _overlap_counts(samples: list[tuple[np.ndarray, np.ndarray]], step: int) -> Any:
    """Common valid positions of every pair of frames, as a symmetric sparse ``(n, n)`` matrix.

    One sparse product ``V·Vᵀ`` of the frames × positions validity matrix, instead of a
    set intersection per pair of overlapping footprints. CSR, float32 counts; the
    diagonal holds each frame's own count.
    """
    import scipy.sparse as sp

    n = len(samples)
    width = max((int(pos[-1]) // step + 1 for pos, _ in samples if pos.size), default=1)  # sorted positions
    total = sum(int(pos.size) for pos, _ in samples)
    index = np.int32 if width < 2**31 and total < 2**31 else np.int64
    cols, indptr = [], [0]
    for pos, vals in samples:
        ok = np.all(np.isfinite(vals), axis=0)
        cols.append((pos[ok] // step).astype(index))
        indptr.append(indptr[-1] + cols[-1].size)
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=index)
    del cols
    # CSR straight from the per-frame columns (sorted, unique): no COO triplets in memory.
    valid = sp.csr_matrix((np.ones(col.size, dtype=np.float32), col, np.asarray(indptr, dtype=index)),
                          shape=(n, width))
    return (valid @ valid.T).tocsr()


def _common(samples: list[tuple[np.ndarray, np.ndarray]], i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Values ``(C, M)`` of frames i and j at their common positions where both are finite."""
    (pi, vi), (pj, vj) = samples[i], samples[j]
    ai, aj = _matches(pi, pj)
    a, b = vi[:, ai], vj[:, aj]
    ok = np.all(np.isfinite(a), axis=0) & np.all(np.isfinite(b), axis=0)
    return a[:, ok], b[:, ok]


def _matches(pi: np.ndarray, pj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``pi`` and ``pj`` (sorted, unique) of their common values, ascending.

    What ``np.intersect1d(pi, pj, assume_unique=True, return_indices=True)`` returns,
    without its sort of both arrays: only the part of ``pi`` within ``pj``'s range is
    looked up in ``pj`` (footprints overlap by a fraction).
    """
    if pi.size == 0 or pj.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    lo, hi = int(np.searchsorted(pi, pj[0], side="left")), int(np.searchsorted(pi, pj[-1], side="right"))
    part = pi[lo:hi]
    at = np.searchsorted(pj, part)  # < pj.size: part is within pj's range
    ai = np.nonzero(pj[at] == part)[0]
    return ai + lo, at[ai]


def _partners(overlaps: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames sharing at least ``MIN_PAIR_SAMPLES`` with frame ``k``, and the counts (int64)."""
    lo, hi = overlaps.indptr[k], overlaps.indptr[k + 1]
    other = overlaps.indices[lo:hi].astype(np.int64)
    count = np.rint(overlaps.data[lo:hi]).astype(np.int64)
    keep = (count >= MIN_PAIR_SAMPLES) & (other != k)
    return other[keep], count[keep]


def _select_pairs(overlaps: Any, n: int) -> dict[tuple[int, int], int]:
    """Each frame's ``_MAX_PARTNERS`` largest overlaps, plus a maximum spanning forest.

    Edges are ordered by count, ties to the smaller ``(i, j)``; that order is total, so
    the maximum spanning forest is unique, and Prim's algorithm finds it one frame's
    row at a time: O(n) memory on top of ``overlaps`` (a deep survey has millions of
    overlapping pairs, which Kruskal would have to sort). Returns the chosen pairs
    ``i < j``, sorted, with their counts.
    """
    chosen: dict[tuple[int, int], int] = {}
    for k in range(n):
        other, count = _partners(overlaps, k)
        lo, hi = np.minimum(other, k), np.maximum(other, k)
        for e in np.lexsort((hi, lo, -count))[:_MAX_PARTNERS].tolist():
            chosen[(int(lo[e]), int(hi[e]))] = int(count[e])
    # Prim on the unique edge key: count first, then the smaller (i, j) first.
    span = n * n
    best = np.full(n, -1, dtype=np.int64)        # best key joining each frame to the tree
    via = np.zeros(n, dtype=np.int64)            # ... and the tree frame at its other end
    done = np.zeros(n, dtype=bool)
    for _ in range(n):
        cand = np.where(done, -2, best)
        v = int(np.argmax(cand))
        if cand[v] == -1:  # no edge to the tree: start the next tree at the first frame left
            v = int(np.argmin(done))
        elif cand[v] >= 0:
            a, b = sorted((v, int(via[v])))
            chosen[(a, b)] = int(cand[v] // span)
        done[v] = True
        other, count = _partners(overlaps, v)
        lo, hi = np.minimum(other, v), np.maximum(other, v)
        key = count * span + (span - 1 - (lo * n + hi))
        better = ~done[other] & (key > best[other])
        best[other[better]] = key[better]
        via[other[better]] = v
    return dict(sorted(chosen.items()))


def _components(n: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = [p[0] for p in pairs]
    cols = [p[1] for p in pairs]
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _solve(n: int, channels: int, pairs: list[tuple[int, int]], maps: dict, counts: dict,
           refs: dict[int, int], samples: list) -> tuple[np.ndarray, np.ndarray]:
    """Gains and offsets of all frames; each connected group's reference is fixed.

    Gains: ``log g_j − log g_i = log g_ij`` from the pairwise fits of the core's method.
    Offsets (when the method has any): with the gains applied, ``o_j − o_i`` is the
    clipped mean of the paired differences ``g_i·x_i − g_j·x_j`` over the pair's common
    positions. Differencing position by position cancels the sky, so the offsets are
    known to the noise / √M — what the background of a mosaic needs — whereas the
    pair's own offset ``o_ij`` also carries its gain error times the sky level.
    Both are solved by :func:`~zemosaic_xp.mosaic.robust.solve_graph` (the solver of the
    tile photometry), each pair weighted by its common positions.
    The common samples of a pair are taken again from ``samples`` (cheap) rather than
    kept from the pair fits: held for every pair, they would take several times the
    samples' own memory.
    """
    from ..mosaic.robust import clipped_mean, solve_graph  # scipy.sparse: not in the workers

    gain = np.ones((n, channels))
    offset = np.zeros((n, channels))
    if not pairs:
        return gain, offset
    edges = np.asarray([(j, i) for i, j in pairs], dtype=np.int64)  # edge (j, i): x_j − x_i
    weight = np.asarray([float(counts[p]) for p in pairs])
    fixed = sorted(set(refs.values()))
    for ch in range(channels):
        log_g = np.log(np.asarray([maps[p][0][ch] for p in pairs]))
        gain[:, ch] = np.exp(solve_graph(edges, log_g, weight, n_nodes=n, fixed=fixed, **_SOLVE)[0])
    if all(np.all(maps[p][1] == 0) for p in pairs):  # a purely multiplicative method: no offsets
        return gain, offset
    diffs = np.zeros((len(pairs), channels))
    for r, (i, j) in enumerate(pairs):
        a, b = _common(samples, i, j)
        for ch in range(channels):
            diffs[r, ch] = clipped_mean(gain[i, ch] * a[ch].astype(np.float64) - gain[j, ch] * b[ch])[0]
    for ch in range(channels):
        offset[:, ch] = solve_graph(edges, diffs[:, ch], weight, n_nodes=n, fixed=fixed, **_SOLVE)[0]
    return gain, offset


def normalise_frames(grid: GlobalGrid, config: StackConfig, *, xp: Any,
                     mapper: Callable[..., Any] = map, keep_planes: bool = False,
                     memory_bytes: int = _SAMPLE_MEMORY_BYTES, threads: int = 1) -> FrameNormalisation:
    """Gain and offset of every frame of ``grid`` onto one reference, from their overlaps.

    Parameters
    ----------
    grid : GlobalGrid
        The survey's canvas and frames; only the frames' footprints and files are used.
    config : StackConfig
        ``normalize`` names the core method fitted on each overlapping pair; "none"
        gives the identity without reading any frame.
    xp : namespace
        The host array namespace.
    mapper : callable
        ``map``-like, used to sample the frames (an executor's ``map`` runs it in
        parallel).
    keep_planes : bool
        Leave the frames' pixels in the process's frame cache (:mod:`.framecache`)
        for tiles made next in this process.
    memory_bytes : int
        Bytes the samples of all frames may take (values and positions); fewer
        samples per frame in large surveys, never fewer than 2048. Default 64 MB,
        whatever ``stack_chunk_budget_mb``: the maps do not depend on the budget.
    threads : int
        Threads of each frame's sampling (:func:`sample_frame`); the maps do not depend
        on it.

    Returns
    -------
    FrameNormalisation
        ``gains``/``offsets`` ``(N, C)`` float64 on the host, the reference frame (the
        group reference sharing the most samples with its partners) and ``info``: method, pairs fitted, groups
        (``components``), ``unlinked`` frames, samples per frame and sample step. Each
        group of frames linked by overlaps is solved onto its own reference; a frame
        without a usable overlap keeps gain 1, offset 0.
    """
    n, channels = len(grid.frames), grid.channels
    identity = FrameNormalisation(np.ones((n, channels)), np.zeros((n, channels)), 0,
                                  {"method": config.normalize, "pairs": 0, "unlinked": []})
    if config.normalize == "none" or n == 1:
        return identity
    per_frame = min(config.frame_stats_samples or _SAMPLES_PER_FRAME, _SAMPLES_PER_FRAME,
                    max(2048, int(memory_bytes) // (n * (channels + 2) * 4)))
    step = _sample_step(grid, per_frame)
    height, width = grid.shape
    flat_index = np.int32 if height * width < 2**31 else np.int64  # halves the positions' memory
    positions = [_positions_in(f.footprint, width, height, step).astype(flat_index) for f in grid.frames]
    header = grid.header_string()
    sampler = partial(sample_frame, keep=keep_planes, threads=threads) if keep_planes or threads > 1 else sample_frame
    values = list(mapper(sampler, [f.path for f in grid.frames], [header] * n, positions, [width] * n))
    samples = list(zip(positions, values))
    counts = _select_pairs(_overlap_counts(samples, step), n)  # chosen pairs -> common samples
    maps = {}
    for pair in counts:
        maps[pair] = _pair_map(*_common(samples, *pair), config, xp)
    pairs = [p for p in maps if np.all(maps[p][0] > 0)]  # a degenerate fit carries no gain
    labels = _components(n, pairs)
    shared = np.zeros(n)
    for (i, j) in pairs:
        shared[i] += counts[(i, j)]
        shared[j] += counts[(i, j)]
    refs = {}
    for label in np.unique(labels):
        members = np.nonzero(labels == label)[0]
        refs[int(label)] = int(members[np.argmax(shared[members])])
    gains, offsets = _solve(n, channels, pairs, maps, counts, refs, samples)
    reference = max(refs.values(), key=lambda k: (shared[k], -k))
    unlinked = [int(k) for k in range(n) if np.sum(labels == labels[k]) == 1]
    info = {"method": config.normalize, "pairs": len(pairs), "components": len(refs), "unlinked": unlinked,
            "samples_per_frame": per_frame, "sample_step": step}
    logger.info("[GRID] frame normalisation (%s): %d frames, %d overlapping pairs, %d group(s)%s",
                config.normalize, n, len(pairs), len(refs),
                f", {len(unlinked)} frame(s) without overlap kept as is" if unlinked else "")
    return FrameNormalisation(gains, offsets, reference, info)
