"""Photometric matching of overlapping mosaic tiles: robust pair fits, then one global solve.

Every tile ``t`` gets, per channel, a gain ``g_t`` and an offset ``o_t`` (applied as
``x' = g_t·x + o_t``) such that corrected tiles agree on every overlap. The reference
tile is fixed at ``g = 1, o = 0``. The work is split in two linear problems, each
solved by iteratively reweighted least squares on the tile graph:

1. **Gains.** On each overlap (pixels finite with weight > 0 in both tiles, away from
   either tile's valid edge) a robust line ``x_b ≈ s·x_a + c`` is fitted: residual
   clipping at 3·(1.4826·MAD) removes stars that disagree, cosmic rays and trails;
   the slope of the kept samples is the *reduced-major-axis* slope
   ``sign(cov)·std(x_b)/std(x_a)``. Unlike ordinary least squares it is not biased
   towards 0 when both tiles carry noise (errors in both variables): whenever the
   noise scales with the tile gain, as it does for stacks of the same frames, its
   expectation is the gain ratio even on a flat, noise-dominated overlap. The
   constraint ``log g_a − log g_b = log s`` gets the weight ``n·r²/(1 − r²)`` (the
   inverse variance of ``log s``, ``r`` = correlation of the kept samples), so an
   overlap with little dynamic range barely constrains gains.
2. **Offsets.** With the gains fixed, ``d = loc(g_a·x_a − g_b·x_b)`` over the same
   samples, ``loc`` the 3σ-clipped mean of :func:`.robust.clipped_mean`; the constraint
   ``o_b − o_a = d`` gets the weight ``n / var(d)``. Matching offsets *after* the
   gains is what removes seams: ``d`` is dominated by the background.

Each solve is :func:`.robust.solve_graph` (the same solver as the survey's frame
normalisation): it fixes the reference, adds a tiny ridge pull to 0 (log-gain 0,
offset 0) so a tile joined only by gain-less edges stays at identity, and downweights
inconsistent pairs with Huber weights (c = 2 on residuals standardised by a MAD
scale, residuals below a floor never downweighted). Gains are clipped to
``GAIN_RANGE``. Tiles not connected to the reference through overlaps keep the
identity; ``info["unconnected_tiles"]`` lists them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..core.nanstats import MAD_TO_SIGMA
from .robust import clipped_mean, solve_graph

__all__ = ["GAIN_RANGE", "Overlap", "PhotometrySolution", "find_overlaps", "solve_photometry"]

logger = logging.getLogger(__name__)

GAIN_RANGE = (0.2, 5.0)
_KAPPA = 3.0
_MAX_FIT_ITERS = 10
_HUBER_C = 2.0
_MAX_SAMPLES = 65536
_EDGE_MARGIN_PX = 2.0
# log-gain residuals below this (0.2 %) are consistent whatever their z-score: stacks of
# the same frames make r ≈ 1 and weights huge, so tiny model errors would look like outliers.
_LOG_GAIN_FLOOR = 2e-3


@dataclass
class Overlap:
    """The common bounding box of two tiles.

    Attributes
    ----------
    a, b : int
        Indices of the two tiles in the tile list, ``a < b``.
    slice_a, slice_b : (slice, slice)
        The box in each tile's own pixels.
    minor_px : int
        The box's short side.
    n_samples : ndarray, shape (C,), int64
        Samples used per channel, filled in by :func:`solve_photometry`.
    """

    a: int
    b: int
    slice_a: tuple[slice, slice]
    slice_b: tuple[slice, slice]
    minor_px: int
    n_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class PhotometrySolution:
    """Per-tile gains and offsets and a JSON-able report.

    Attributes
    ----------
    gains, offsets : ndarray, shape (T, C), float64
        ``x' = gain·x + offset`` per tile and channel.
    reference : int
        Index of the tile held at gain 1, offset 0.
    info : dict
        The report (see :func:`solve_photometry`).
    """

    gains: np.ndarray
    offsets: np.ndarray
    reference: int
    info: dict[str, Any]


def find_overlaps(boxes: Sequence[tuple[int, int, int, int]]) -> list[Overlap]:
    """Find the pairs of tiles whose boxes intersect (one vectorised pass per tile).

    Parameters
    ----------
    boxes : sequence of (y0, x0, h, w)
        Each tile's box on the canvas, in pixels.

    Returns
    -------
    list of Overlap
        One per intersecting pair, ``a < b``, ordered by ``a`` then ``b``.
    """
    arr = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    y0, x0 = arr[:, 0], arr[:, 1]
    y1, x1 = y0 + arr[:, 2], x0 + arr[:, 3]
    out = []
    for a in range(len(arr) - 1):
        iy0, iy1 = np.maximum(y0[a], y0[a + 1:]), np.minimum(y1[a], y1[a + 1:])
        ix0, ix1 = np.maximum(x0[a], x0[a + 1:]), np.minimum(x1[a], x1[a + 1:])
        for k in np.flatnonzero((iy1 > iy0) & (ix1 > ix0)):
            b = a + 1 + int(k)
            ya0, ya1, xa0, xa1 = int(iy0[k]), int(iy1[k]), int(ix0[k]), int(ix1[k])
            out.append(Overlap(a, b, (slice(ya0 - y0[a], ya1 - y0[a]), slice(xa0 - x0[a], xa1 - x0[a])),
                               (slice(ya0 - y0[b], ya1 - y0[b]), slice(xa0 - x0[b], xa1 - x0[b])),
                               min(ya1 - ya0, xa1 - xa0)))
    return out


def _pair_samples(images: Sequence[np.ndarray], valid: Sequence[np.ndarray], dists: Sequence[np.ndarray],
                  ov: Overlap, channel: int, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlap samples ``(x_a, x_b)`` as float64, deterministically thinned to ``_MAX_SAMPLES``.

    Pixels within ``_EDGE_MARGIN_PX`` of either tile's valid edge are left out (reprojection
    and rejection are least reliable there) unless that leaves fewer than ``min_samples``.
    """
    xa = images[ov.a][ov.slice_a + (channel,)]
    xb = images[ov.b][ov.slice_b + (channel,)]
    ok = valid[ov.a][ov.slice_a + (channel,)] & valid[ov.b][ov.slice_b + (channel,)]
    interior = ok & (dists[ov.a][ov.slice_a] > _EDGE_MARGIN_PX) & (dists[ov.b][ov.slice_b] > _EDGE_MARGIN_PX)
    if np.count_nonzero(interior) >= min_samples:
        ok = interior
    idx = np.flatnonzero(ok)
    if idx.size > _MAX_SAMPLES:
        idx = idx[:: -(-idx.size // _MAX_SAMPLES)]
    return xa.ravel()[idx].astype(np.float64), xb.ravel()[idx].astype(np.float64)


def _robust_line(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float, int]:
    """Clipped reduced-major-axis fit ``x_b ≈ s·x_a + c``; returns (s, r, n_kept), s NaN if unconstrained."""
    qa = np.percentile(xa, [25.0, 90.0])
    qb = np.percentile(xb, [25.0, 90.0])
    spread = qa[1] - qa[0]
    slope = (qb[1] - qb[0]) / spread if spread > 0 else 1.0
    slope = slope if np.isfinite(slope) and 0.1 < slope < 10.0 else 1.0
    icpt = float(np.median(xb - slope * xa))
    keep = np.ones(xa.size, dtype=bool)
    corr = 0.0
    for it in range(_MAX_FIT_ITERS):
        resid = xb - slope * xa - icpt
        centre = np.median(resid)
        dev = np.abs(resid - centre)
        scale = MAD_TO_SIGMA * np.median(dev)
        new_keep = dev <= _KAPPA * scale if scale > 0 else dev <= np.max(dev)
        if it > 0 and np.array_equal(new_keep, keep):
            break
        keep = new_keep
        ka, kb = xa[keep], xb[keep]
        da, db = ka - ka.mean(), kb - kb.mean()
        saa, sbb, sab = float(da @ da), float(db @ db), float(da @ db)
        if saa <= 0 or sbb <= 0 or sab <= 0:
            return float("nan"), 0.0, int(keep.sum())
        slope = np.sqrt(sbb / saa)
        icpt = float(kb.mean() - slope * ka.mean())
        corr = sab / np.sqrt(saa * sbb)
    return float(slope), float(corr), int(keep.sum())


def _reference(n_tiles: int, overlaps: Sequence[Overlap], n_valid: Sequence[int]) -> int:
    shared = np.zeros(n_tiles)
    for ov in overlaps:
        shared[ov.a] += ov.n_samples[0]
        shared[ov.b] += ov.n_samples[0]
    order = sorted(range(n_tiles), key=lambda t: (-shared[t], -n_valid[t], t))
    return order[0]


def solve_photometry(images: Sequence[np.ndarray], valid: Sequence[np.ndarray], dists: Sequence[np.ndarray],
                     overlaps: Sequence[Overlap], *, reference: int | None, tile_ids: Sequence[int],
                     min_samples: int = 64, progress: Callable[[], None] = lambda: None) -> PhotometrySolution:
    """Fit every overlap and solve gains and offsets per channel (see the module docstring).

    Parameters
    ----------
    images : sequence of ndarray, shape (h, w, C), float32
        Tiles; NaN = no data.
    valid : sequence of ndarray, shape (h, w, C), bool
        Finite with weight > 0.
    dists : sequence of ndarray, shape (h, w), float
        Distance of each pixel to its tile's valid edge (0 outside).
    overlaps : sequence of Overlap
        From :func:`find_overlaps`; ``n_samples`` is filled in.
    reference : int or None
        Index of the reference tile; None picks the tile sharing the most overlap samples.
    tile_ids : sequence of int
        Only used to name tiles in ``info``.
    min_samples : int
        Fewest overlap samples for a pair to be fitted in a channel.
    progress : callable
        Called once per overlap fitted.

    Returns
    -------
    PhotometrySolution
        ``gains``/``offsets`` of shape (T, C), float64 on the host.
    """
    n_tiles, n_chan = len(images), images[0].shape[2]
    fits_ab: list[list[tuple[np.ndarray, np.ndarray] | None]] = []
    for ov in overlaps:
        per_chan = []
        for c in range(n_chan):
            xa, xb = _pair_samples(images, valid, dists, ov, c, min_samples)
            per_chan.append((xa, xb) if xa.size >= min_samples else None)
        ov.n_samples = np.array([0 if s is None else s[0].size for s in per_chan], dtype=np.int64)
        fits_ab.append(per_chan)
        progress()
    n_valid = [int(v.any(axis=2).sum()) for v in valid]
    ref = reference if reference is not None else _reference(n_tiles, overlaps, n_valid)
    gains = np.ones((n_tiles, n_chan))
    offsets = np.zeros((n_tiles, n_chan))
    info: dict[str, Any] = {"reference_tile": int(tile_ids[ref]), "channels": []}
    pair_rows = [{"tiles": [int(tile_ids[ov.a]), int(tile_ids[ov.b])], "n": ov.n_samples.tolist(),
                  "slope": [], "gain_weight": [], "residual": [], "downweighted": []} for ov in overlaps]
    unconnected: set[int] = set()
    for c in range(n_chan):
        ch_info = _solve_channel(c, fits_ab, overlaps, ref, n_tiles, gains, offsets, pair_rows)
        unconnected.update(ch_info.pop("unconnected"))
        info["channels"].append(ch_info)
    info["pairs"] = pair_rows
    used = [bool(ov.n_samples.size and ov.n_samples.min() > 0) for ov in overlaps]
    info["pairs_used"] = int(sum(used))
    info["pairs_dropped"] = [r["tiles"] for r, ok in zip(pair_rows, used) if not ok]
    info["unconnected_tiles"] = sorted(int(tile_ids[t]) for t in unconnected)
    resid = [abs(v) for r in pair_rows for v in r["residual"] if v is not None]
    info["max_abs_pair_residual"] = float(max(resid)) if resid else 0.0
    return PhotometrySolution(gains, offsets, ref, info)


def _solve_channel(c: int, fits_ab: list, overlaps: Sequence[Overlap], ref: int, n_tiles: int,
                   gains: np.ndarray, offsets: np.ndarray, pair_rows: list[dict]) -> dict[str, Any]:
    """Solve channel ``c`` in place into ``gains[:, c]``/``offsets[:, c]``; returns its info."""
    used = [k for k, f in enumerate(fits_ab) if f[c] is not None]
    edges = np.array([[overlaps[k].a, overlaps[k].b] for k in used], dtype=np.int64).reshape(-1, 2)
    adj = sp.coo_matrix((np.ones(len(used)), (edges[:, 0], edges[:, 1])), shape=(n_tiles, n_tiles))
    _, labels = connected_components(adj, directed=False)
    member = labels == labels[ref]
    unconnected = [t for t in range(n_tiles) if not member[t]]
    # Stage 1: log-gains from clipped reduced-major-axis slopes.
    log_s, w_gain = np.zeros(len(used)), np.zeros(len(used))
    for i, k in enumerate(used):
        xa, xb = fits_ab[k][c]
        slope, corr, n_kept = _robust_line(xa, xb)
        pair_rows[k]["slope"].append(slope if np.isfinite(slope) else None)
        if np.isfinite(slope) and slope > 0:
            log_s[i] = np.log(slope)
            w_gain[i] = n_kept * min(corr * corr / max(1.0 - corr * corr, 1e-12), 1e6)
        pair_rows[k]["gain_weight"].append(float(w_gain[i]))
    # edge (a, b) says log g_a − log g_b = log s
    log_g, it_g, hub_g = solve_graph(edges, log_s, w_gain, n_nodes=n_tiles, fixed=(ref,), huber_c=_HUBER_C,
                                     floor=_LOG_GAIN_FLOOR)
    g = np.where(member, np.exp(log_g), 1.0)
    clipped = [int(t) for t in np.flatnonzero((g < GAIN_RANGE[0]) | (g > GAIN_RANGE[1]))]
    g = np.clip(g, *GAIN_RANGE)
    # Stage 2: offsets from clipped mean differences of the gain-corrected overlaps.
    d, w_off, sd = np.zeros(len(used)), np.zeros(len(used)), np.zeros(len(used))
    for i, k in enumerate(used):
        xa, xb = fits_ab[k][c]
        a, b = edges[i]
        d[i], sd[i], n_kept = clipped_mean(g[a] * xa - g[b] * xb)
        w_off[i] = n_kept / max(sd[i] ** 2, 1e-12 * (1.0 + d[i] ** 2))
    floor = 0.1 * float(np.median(sd)) if len(sd) else 0.0
    # o_b − o_a = d  ⇔  o_a − o_b = −d
    o, it_o, hub_o = solve_graph(edges, -d, w_off, n_nodes=n_tiles, fixed=(ref,), huber_c=_HUBER_C, floor=floor)
    o = np.where(member, o, 0.0)
    gains[:, c], offsets[:, c] = g, o
    for k in range(len(overlaps)):
        if fits_ab[k][c] is None:
            pair_rows[k]["slope"].append(None)
            pair_rows[k]["gain_weight"].append(0.0)
            pair_rows[k]["residual"].append(None)
            pair_rows[k]["downweighted"].append(False)
    for i, k in enumerate(used):
        a, b = edges[i]
        pair_rows[k]["residual"].append(float(d[i] + o[a] - o[b]))
        pair_rows[k]["downweighted"].append(bool(hub_g[i] < 1.0 or hub_o[i] < 1.0))
    return {"gain_iterations": it_g, "offset_iterations": it_o, "gains_clipped": clipped,
            "unconnected": unconnected}
