"""Robust statistics of overlaps: the clipped mean of paired differences, and the graph solve.

Two things every overlap-based matching needs, written once for the tiles of the
assembly (:mod:`.photometry`), the frames of a grid survey
(:mod:`zemosaic_xp.grid.normalise`) and the seam metric (:mod:`zemosaic_xp.diagnostics`):

- :func:`clipped_mean`, the location of a set of paired differences with stars, cosmic
  rays and trails removed: a 3σ-clipped mean (median start, MAD scale);
- :func:`solve_graph`, the values of the nodes of an overlap graph from noisy, weighted
  differences along its edges, by iteratively reweighted least squares with Huber
  weights, so that an inconsistent edge does not pull the solution.

Both are NumPy / SciPy on the host: their inputs are a few numbers per overlap.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from ..core.nanstats import MAD_TO_SIGMA

__all__ = ["clipped_mean", "solve_graph"]

_MAX_CLIP_ITERS = 5
_MAX_SOLVE_ITERS = 20
# The solve stops when no node moves more than this, relative to the largest value.
_SOLVE_RTOL = 1e-9
# Ridge pull of every free node to 0, relative to the largest edge weight: keeps the
# normal matrix regular when a node hangs on zero-weight edges only (it stays at 0),
# and is far below any weight that carries information.
_RIDGE = 1e-12


def clipped_mean(values: np.ndarray, /, *, kappa: float = 3.0,
                 max_iters: int = _MAX_CLIP_ITERS) -> tuple[float, float, int]:
    """Mean of ``values`` after κσ clipping about the median (MAD scale).

    Parameters
    ----------
    values : ndarray, shape (M,), float
        Paired differences (finite, M >= 1), in image units.
    kappa : float
        Clipping threshold in units of σ = 1.4826·MAD of the kept values about their median.
    max_iters : int
        At most this many rounds; each keeps, among *all* values, those within κσ of
        the kept values' median, until the kept set stops changing (a value clipped
        early comes back if the centre moves towards it).

    Returns
    -------
    location : float
        Mean of the kept values.
    std : float
        Their standard deviation; 0.0 for fewer than two.
    n_kept : int
        How many values were kept (>= 1).

    Notes
    -----
    The clipping of ``astropy.stats.sigma_clipped_stats(cenfunc="median",
    stdfunc="mad_std")``, except that the set can grow back, and the mean of the kept
    values is returned. Each round costs two medians, O(M); the scale gets 1e-12 added so
    that a set of identical values keeps them all.
    """
    keep = np.ones(values.size, dtype=bool)
    for _ in range(max_iters):
        kept = values[keep]  # a copy: the medians below reorder it in place
        centre = _median_in_place(kept)
        scale = MAD_TO_SIGMA * _median_in_place(np.abs(kept - centre)) + 1e-12
        new_keep = np.abs(values - centre) <= kappa * scale
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    kept = values[keep]
    return float(np.mean(kept)), float(kept.std()) if kept.size > 1 else 0.0, int(kept.size)


def _median_in_place(a: np.ndarray) -> float:
    """``np.median(a)`` of a 1-D array of finite values (M >= 1), partitioning ``a`` itself.

    The same value as ``np.median`` (the middle element, or the two middle ones'
    ``(x + y) / 2`` as its mean computes it), without its copy of ``a``.
    """
    n = a.size
    k = n // 2
    if n % 2:
        a.partition(k)
        return float(a[k])
    a.partition((k - 1, k))
    return float((a[k - 1] + a[k]) / 2)


def _incidence(n_nodes: int, edges: np.ndarray, free: np.ndarray) -> sp.csr_matrix:
    """Rows ``+1`` at ``a``, ``−1`` at ``b`` for each edge (a, b), over the free nodes' columns."""
    col = np.full(n_nodes, -1)
    col[free] = np.arange(free.size)
    n_edges = edges.shape[0]
    rows = np.repeat(np.arange(n_edges), 2)
    signs = np.tile([1.0, -1.0], n_edges)
    cols = col[edges.ravel()]
    use = cols >= 0
    return sp.csr_matrix((signs[use], (rows[use], cols[use])), shape=(n_edges, free.size))


def solve_graph(edges: np.ndarray, values: np.ndarray, weights: np.ndarray, /, *, n_nodes: int,
                fixed: Collection[int], huber_c: float = 2.0, floor: float = 0.0, standardize: bool = True,
                max_iters: int = _MAX_SOLVE_ITERS) -> tuple[np.ndarray, int, np.ndarray]:
    """Node values ``x`` with ``x_a − x_b ≈ v`` on every edge (a, b), robust to bad edges.

    Parameters
    ----------
    edges : ndarray, shape (E, 2), int
        Node indices ``(a, b)`` of each edge, in ``[0, n_nodes)``.
    values : ndarray, shape (E,), float
        The measured difference ``x_a − x_b`` of each edge.
    weights : ndarray, shape (E,), float
        Inverse variance of each measurement, >= 0 (0: the edge carries nothing).
    n_nodes : int
        Number of nodes.
    fixed : collection of int
        Nodes held at 0 (the references; one per connected group of nodes).
    huber_c : float
        Huber threshold on the residuals ``z``, in units of their robust scale
        1.4826·median(|z|): an edge beyond it gets its weight multiplied by
        ``huber_c·scale/|z|``.
    floor : float
        Residuals ``|r|`` at or below this are never downweighted, whatever their z:
        when weights are huge, tiny model errors would otherwise look like outliers.
    standardize : bool
        True: ``z = r·√w``, residuals in units of each edge's own σ (edges of very
        different precision, e.g. tile overlaps weighted by their dynamic range).
        False: ``z = r``, one scale for all edges (weights that only count samples,
        e.g. frame pairs weighted by their common positions).
    max_iters : int
        At most this many solves; the last re-weighting is applied by the next solve.

    Returns
    -------
    x : ndarray, shape (n_nodes,), float64
        0 at ``fixed`` nodes; a node joined to no fixed node gets the values its edges
        give relative to each other, pulled to 0 on average by a tiny ridge (callers
        keep such nodes at their identity).
    iterations : int
        Least-squares solves done (0 without edges).
    huber : ndarray, shape (E,), float64
        The Huber factor of each edge at the end, in (0, 1]; < 1 means downweighted.

    Notes
    -----
    Each round solves the weighted normal equations ``(AᵀWA + λI) x = AᵀWv`` (sparse LU,
    ``A`` the signed incidence matrix over the free nodes), then re-weights; it stops
    when no node moves by more than 1e-9 of the largest value, or after ``max_iters``
    rounds. Without more edges than free nodes (a tree) residuals are all 0 and no
    edge is downweighted.
    """
    huber = np.ones(len(values))
    x = np.zeros(n_nodes)
    is_fixed = np.zeros(n_nodes, dtype=bool)
    is_fixed[list(fixed)] = True
    free = np.flatnonzero(~is_fixed)
    if len(values) == 0 or free.size == 0:
        return x, 0, huber
    inc = _incidence(n_nodes, edges, free)
    ridge = _RIDGE * max(float(weights.max()), 1e-30) + 1e-30
    iters = 0
    for iters in range(1, max_iters + 1):
        w = weights * huber
        normal = (inc.T @ sp.diags(w) @ inc + ridge * sp.identity(free.size)).tocsc()
        new_x = np.zeros(n_nodes)
        new_x[free] = np.atleast_1d(spsolve(normal, inc.T @ (w * values)))
        resid = new_x[edges[:, 0]] - new_x[edges[:, 1]] - values
        z = resid * np.sqrt(weights) if standardize else resid
        scale = MAD_TO_SIGMA * np.median(np.abs(z)) if len(values) > free.size else np.inf
        new_huber = np.ones(len(values))
        big = (np.abs(z) > huber_c * scale) & (np.abs(resid) > floor)
        new_huber[big] = huber_c * scale / np.abs(z[big])
        delta = np.max(np.abs(new_x - x))
        x, huber = new_x, new_huber
        if delta <= _SOLVE_RTOL * (1.0 + np.max(np.abs(x))) and iters > 1:
            break
    return x, iters, huber
