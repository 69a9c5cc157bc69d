"""What the tests of the numba band rejections share (``test_numba_<algorithm>.py``).

Each algorithm's band kernel (``backends/numba/<algorithm>.py`` through
``backends/numba/band.py``) must give what the portable core gives: every result
array identical to the bit, and the same statistics. :func:`mixed_frames` packs the
edge cases into the rows of one stack, so that every stack covers them all.
"""

from __future__ import annotations

from unittest import mock

import array_api_compat.numpy as XP
import numpy as np
import pytest

from zemosaic_xp import StackConfig, stack
from zemosaic_xp.backends.ops_numpy import NumpyOps
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.core.ops import portable_only

# The kernels import numba: without it every test module that imports this one skips.
kernels = pytest.importorskip("zemosaic_xp.backends.numba.kernels",
                              reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")

#: Frame counts: 1–3 (guards), the sorting network (<= 48) and NumPy's sort (49, 60).
N_FRAMES = (1, 2, 3, 5, 8, 17, 48, 49, 60)
COMBINES = ("mean", "median", "sum", "min", "max")
RESULTS = ("image", "weight_sum", "coverage", "rejected_low", "rejected_high")
__all__ = ["N_FRAMES", "COMBINES", "mixed_frames", "stack_both", "assert_identical", "check_every_combine",
           "check_band_invariance"]
STATS = ("iterations", "valid_samples", "rejected_low_count", "rejected_high_count", "rejected_pct")


def mixed_frames(n: int, seed: int, shape: tuple[int, int] = (20, 24), *, wide: bool = True) -> np.ndarray:
    """``(n, 20, 24)`` float32 frames whose rows hold the edge cases.

    Rows 0–3 sky with cosmic rays; 4–7 outliers at several levels (several
    iterations); 8–10 integers (ties everywhere); 11 integers and 1e-12 (ties and a
    float64 sum that is not exact: the frame-order sum of the combine); 12–13 values
    spanning 18 decades (the same); 14 signed zeros; 15 ±1e30 and ±2e30; 16–17 0 to 3
    valid samples; 18 ±inf (no data); 19 pixels without any sample. NaN holes
    everywhere, and pixel (0, 0) has no sample either. ``wide=False``: rows 11–13 are
    sky too (every float64 sum of a pixel is then exact).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    x = rng.normal(1000, 10, (n, h, w)).astype(np.float32)
    hits = rng.random(x.shape)
    x[hits < 0.03] += (300 + 3000 * hits[hits < 0.03] / 0.03).astype(np.float32)
    x[:, 4:8] = rng.normal(0, 1, (n, 4, w)).astype(np.float32)
    for level in (3, 6, 15, 50):
        x[:, 4:8][rng.random((n, 4, w)) < 0.04] += level
    x[:, 8:12] = rng.integers(0, 5, (n, 4, w)).astype(np.float32)
    x[:, 11][rng.random((n, w)) < 0.3] = np.float32(1e-12)
    x[:, 12:14] = (rng.normal(0, 1, (n, 2, w)) * 10.0 ** rng.integers(-12, 6, (n, 2, w))).astype(np.float32)
    if not wide:
        x[:, 11:14] = x[:, 0:3]
    x[:, 14] = -0.0
    x[:, 14, ::3] = 0.0
    x[:, 15] = rng.integers(-2, 3, (n, w)).astype(np.float32) * np.float32(1e30)
    tiny = rng.normal(50, 3, (n, 2, w)).astype(np.float32)
    tiny[np.arange(n)[:, None, None] >= rng.integers(0, 4, (2, w))[None]] = np.nan
    x[:, 16:18] = tiny
    x[rng.random(x.shape) < 0.05] = np.nan
    x[min(2, n - 1), 18, 5] = np.inf
    x[min(3, n - 1), 18, 6] = -np.inf
    x[:, 19, :3] = np.nan
    x[:, 0, 0] = np.nan
    return x


def stack_both(frames, config: StackConfig, *, reference: str = "portable", **kwargs):
    """``stack()`` with the numba kernels, and on the ``reference`` path.

    ``"portable"``: the portable core. ``"core"``: the core's pipeline on the NumPy
    backend, with the numba row kernels (κ-σ, WSC) it uses there but no band kernel.
    """
    with np.errstate(all="ignore"):  # ±1e30 rows overflow the core's float32 arithmetic, on purpose
        fast = stack(frames, config=config, **kwargs)
        if reference == "portable":
            with portable_only():
                ref = stack(frames, config=config, **kwargs)
        else:
            with mock.patch.object(kernels, "supports", lambda config, plan, *args: False):
                ref = stack(frames, config=config, **kwargs)
    return fast, ref


def assert_identical(fast, ref, what: str = "") -> None:
    """Every result array identical to the bit (NaN included), and the same statistics."""
    assert fast.stats["ops"] == "numpy+numba" and ref.stats["ops"] in ("portable", "numpy+numba")
    for name in RESULTS:
        got, want = np.asarray(getattr(fast, name)), np.asarray(getattr(ref, name))
        assert got.dtype == want.dtype and got.shape == want.shape, f"{what} {name}"
        if got.tobytes() != want.tobytes():
            bad = np.argwhere(got.view(np.uint32 if got.itemsize == 4 else np.uint64)
                              != want.view(np.uint32 if want.itemsize == 4 else np.uint64))[:5]
            pytest.fail(f"{what} {name} differs at {bad.tolist()}: {got[tuple(bad.T)]} != {want[tuple(bad.T)]}")
    for name in STATS:
        assert fast.stats[name] == ref.stats[name], f"{what} {name}"


def check_every_combine(reject: str, frames, band_calls, *, normalize: str = "none", reference: str = "portable",
                        **params) -> None:
    """The band stacker equals the ``reference`` path (:func:`stack_both`) for every combine."""
    for combine in COMBINES:
        config = StackConfig(normalize=normalize, weighting="none", reject=reject, combine=combine, **params)
        assert_identical(*stack_both(frames, config, reference=reference),
                         what=f"{reject}/{combine}/{normalize}/{params}")
    assert band_calls and all(band_calls)


def check_band_invariance(reject: str, **params) -> None:
    """Bands of 1, 3 and all rows, one or two threads, RGB: identical results, every combine."""
    frames = np.stack([mixed_frames(13, seed) for seed in (4, 5, 6)], axis=-1)
    serial = NumpyOps(XP)
    serial.band_workers = 1
    for combine in COMBINES:
        config = StackConfig.plain(reject=reject, combine=combine, **params)
        with np.errstate(all="ignore"):
            results = [stack_frames(frames, config=config, band_rows=rows) for rows in (1, 3, frames.shape[1])]
            results.append(stack_frames(frames, config=config, band_rows=2, ops=serial))
        for other in results[1:]:
            for name in RESULTS:
                assert getattr(other, name).tobytes() == getattr(results[0], name).tobytes(), f"{combine} {name}"
        assert all(r.stats["ops"] == "numpy+numba" for r in results)
