"""Critical values of Rosner's generalized ESD test, computed on the host in pure Python.

The core must not depend on SciPy, and the critical values depend only on the stack
size and α, so they are computed once per (N, α) with the standard library and
cached. Student-t quantiles come from the regularised incomplete beta function
(a modified-Lentz continued fraction), inverted by a safeguarded Newton iteration
started from the Cornish–Fisher expansion around the normal quantile; the tests
check them against ``scipy.stats.t.isf`` to ~1e-10 relative.
"""

from __future__ import annotations

import math
from functools import lru_cache

__all__ = ["student_t_sf", "student_t_isf", "normal_isf", "gesd_critical_values"]

_EPS = 1e-15
_TINY = 1e-300
_MAX_CF_TERMS = 10_000


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_CF_TERMS):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                    -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast below the mean of Beta(a, b); use the symmetry above it.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """Survival function P(T > t) of Student's t distribution.

    Parameters
    ----------
    t : float
        The point.
    df : float
        Degrees of freedom, > 0.

    Returns
    -------
    float
        P(T > t).
    """
    tail = 0.5 * _betainc(0.5 * df, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def _student_t_logpdf(t: float, df: float) -> float:
    return (math.lgamma(0.5 * (df + 1.0)) - math.lgamma(0.5 * df) - 0.5 * math.log(df * math.pi)
            - 0.5 * (df + 1.0) * math.log1p(t * t / df))


def normal_isf(q: float) -> float:
    """Inverse survival function of the standard normal: z with P(Z > z) = q.

    Parameters
    ----------
    q : float
        Tail probability, 0 < q < 1.

    Returns
    -------
    float
        The quantile z (Newton's method on ``erfc``, to ~1e-15 relative).

    Raises
    ------
    ValueError
        If ``q`` is outside (0, 1).
    """
    if not 0.0 < q < 1.0:
        msg = f"`q` must be in (0, 1), got {q!r}"
        raise ValueError(msg)
    if q > 0.5:
        return -normal_isf(1.0 - q)
    z = math.sqrt(-2.0 * math.log(q)) if q < 0.3 else 0.0
    for _ in range(100):
        sf = 0.5 * math.erfc(z / math.sqrt(2.0))
        pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        step = (sf - q) / pdf
        z += step
        if abs(step) <= 1e-15 * max(1.0, abs(z)):
            break
    return z


def student_t_isf(q: float, df: float) -> float:
    """Inverse survival function of Student's t: t with P(T > t) = q.

    Safeguarded Newton on log P(T > t), bracketed, from the Cornish–Fisher start.

    Parameters
    ----------
    q : float
        Tail probability, 0 < q <= 0.5.
    df : float
        Degrees of freedom, >= 1.

    Returns
    -------
    float
        The quantile t >= 0.

    Raises
    ------
    ValueError
        If ``q`` or ``df`` is out of range.
    """
    if not 0.0 < q <= 0.5:
        msg = f"`q` must be in (0, 0.5], got {q!r}"
        raise ValueError(msg)
    if df < 1:
        msg = f"`df` must be >= 1, got {df!r}"
        raise ValueError(msg)
    if q == 0.5:
        return 0.0
    # Closed forms (Cauchy, and df = 2), written without cancellation for tiny q.
    if df == 1:
        return 1.0 / math.tan(math.pi * q)
    if df == 2:
        return (1.0 - 2.0 * q) / math.sqrt(2.0 * q * (1.0 - q))
    z = normal_isf(q)
    t = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    lo, hi = 0.0, max(2.0 * t, 1.0)
    while student_t_sf(hi, df) > q:
        lo, hi = hi, 2.0 * hi
    t = min(max(t, lo), hi)
    log_q = math.log(q)
    for _ in range(200):
        sf = student_t_sf(t, df)
        if sf > q:
            lo = t
        else:
            hi = t
        # d/dt log sf = -pdf / sf
        step = (math.log(sf) - log_q) / math.exp(_student_t_logpdf(t, df) - math.log(sf))
        new = t + step
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if abs(new - t) <= 1e-14 * abs(new) or hi - lo <= 1e-14 * hi:
            return new
        t = new
    return t


@lru_cache(maxsize=64)
def gesd_critical_values(n_max: int, alpha: float) -> tuple[float, ...]:
    """Compute Rosner's critical value λ_n for every sample count n = 0 … ``n_max``.

    λ_n = (n − 1)·t / sqrt(n·(n − 2 + t²)) with t the Student-t quantile of
    probability 1 − α/(2n) and n − 2 degrees of freedom: the threshold for the
    largest studentized deviation among n samples.

    Parameters
    ----------
    n_max : int
        Largest sample count (the stack size).
    alpha : float
        Significance level of the test, in (0, 1).

    Returns
    -------
    tuple of float, length ``n_max + 1``
        Element n is λ_n at significance ``alpha``; +inf for n < 3 (no test
        possible). Cached per (n_max, alpha), and each λ_n per (n, alpha): a grid
        tile's cells hold every frame count up to the tile's depth, and each count
        reuses the values of the smaller ones instead of solving them again.
    """
    return tuple([math.inf] * min(3, n_max + 1) + [_critical_value(n, alpha) for n in range(3, n_max + 1)])


@lru_cache(maxsize=4096)
def _critical_value(n: int, alpha: float) -> float:
    """λ_n of :func:`gesd_critical_values` for one sample count ``n >= 3``."""
    t = student_t_isf(alpha / (2.0 * n), n - 2)
    return (n - 1) * t / math.sqrt(n * (n - 2 + t * t))
