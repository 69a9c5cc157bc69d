"""The numba bilinear sampler of the grid (backends/numba/bilinear.py) against SciPy, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from zemosaic_xp.grid.point_threads import clip_coords, sample_planes

pytest.importorskip("numba")


def _points(rng: np.random.Generator, h: int, w: int, n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Random points around a (h, w) plane, with integers, border halves, NaN and inf among them."""
    ys = rng.uniform(-1.5, h + 0.5, n)
    xs = rng.uniform(-1.5, w + 0.5, n)
    ys[:2000] = rng.integers(-1, h + 1, 2000)
    xs[:2000] = rng.integers(-1, w + 1, 2000)
    low = [-0.5, -0.25, -1e-300, 0.0, -0.0, 1e-20, 3e-17, 0.5 + 1e-17, np.nextafter(-0.5, -1)]
    edges_y = low + [h - 1, h - 0.5, h - 0.75, h - 1 + 1e-12, np.nextafter(h - 0.5, h)]
    edges_x = low + [w - 1, w - 0.5, w - 0.75, w - 1 + 1e-12, np.nextafter(w - 0.5, w)]
    ys[2000:4000] = rng.choice(edges_y, 2000)
    xs[3000:5000] = rng.choice(edges_x, 2000)
    ys[5000:5100] = np.nan
    xs[5100:5200] = np.inf
    ys[5200:5300] = -np.inf
    return ys, xs


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 2), (3, 7), (64, 50)])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("cval", [np.nan, 0.0])
def test_kernel_is_scipy_bit_for_bit(shape, clip, cval, monkeypatch):
    monkeypatch.setenv("ZEMOSAIC_XP_NUMBA", "1")
    rng = np.random.default_rng(sum(shape) + 7 * clip)
    plane = rng.normal(1000.0, 30.0, shape).astype(np.float32)
    plane[rng.random(shape) < 0.1] = np.nan  # NaN neighbours, also with weight 0 at the last row/column
    ys, xs = _points(rng, *shape)
    coords = np.array([ys, xs])
    expected = map_coordinates(plane, clip_coords(coords, shape) if clip else coords, order=1, mode="constant",
                               cval=cval, output=np.float32)
    got = np.full(ys.shape, -7.0, dtype=np.float32)
    sample_planes([plane], ys, xs, [got], [cval], clip=clip)
    np.testing.assert_array_equal(got.view(np.uint32)[~np.isnan(expected)],
                                  expected.view(np.uint32)[~np.isnan(expected)])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    if plane.size > 100:  # the case exercises both NaN and finite samples
        assert np.isnan(expected[5300:]).any() and np.isfinite(expected).any()


def test_clipping_moves_only_the_border_halves():
    coords = np.array([[-0.75, -0.5, -0.25, 0.0, 8.5, 9.0, 9.25, 9.5, np.nan],
                       [0.0] * 9])
    clipped = clip_coords(coords, (10, 10))
    np.testing.assert_array_equal(clipped[0], [-0.75, 0.0, 0.0, 0.0, 8.5, 9.0, 9.0, 9.5, np.nan])
    np.testing.assert_array_equal(coords[0, :3], [-0.75, -0.5, -0.25])  # a copy


def test_samplers_agree_on_a_reprojected_frame(monkeypatch):
    """Both samplers give one patch (the numba kernel and SciPy, threads included)."""
    rng = np.random.default_rng(11)
    planes = [rng.normal(0, 1, (300, 200)).astype(np.float32) for _ in range(2)]
    planes[0][rng.random((300, 200)) < 0.01] = np.nan
    planes[1].flags.writeable = False  # the frame cache hands out read-only planes
    yy, xx = np.meshgrid(np.linspace(-3, 305, 400), np.linspace(-3, 205, 300), indexing="ij")
    ys = (yy * np.cos(0.2) + xx * np.sin(0.2)).ravel()
    xs = (xx * np.cos(0.2) - yy * np.sin(0.2) + 30).ravel()
    results = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("ZEMOSAIC_XP_NUMBA", flag)
        outs = [np.empty(ys.size, np.float32) for _ in planes]
        sample_planes(planes, ys, xs, outs, [np.nan, 0.0], clip=True, threads=3)
        results[flag] = outs
    for a, b in zip(results["1"], results["0"]):
        np.testing.assert_array_equal(a, b)
