"""Per-point work split over threads (grid/point_threads.py): the same floats as one call."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from zemosaic_xp.grid import point_threads, worker_count
from zemosaic_xp.grid.point_threads import _bounds, pixel_grid_to_world, pixel_to_world, sample_planes, world_to_pixel

from .frames_util import tan_wcs
from .test_reproject_tile import _sip


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of 50 points, so that small arrays are split (the default minimum is 32768)."""
    monkeypatch.setattr(point_threads, "MIN_POINTS_PER_THREAD", 50)


@pytest.mark.parametrize("n", [0, 1, 49, 50, 99, 100, 101, 1000])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_bounds_cover_every_point_once(small_parts, n, threads):
    bounds = _bounds(n, threads)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(b[1] == c[0] for b, c in zip(bounds, bounds[1:]))
    assert 1 <= len(bounds) <= threads
    if len(bounds) > 1:
        assert min(b - a for a, b in bounds) >= 50


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("distorted", [False, True])
def test_pixel_grid_by_chunks_equals_one_call(small_parts, monkeypatch, threads, distorted):
    # Chunks of 37 points (rows of 41 px: chunks start mid-row) and parts over threads give
    # the floats of one call on the whole meshgrid.
    monkeypatch.setattr(point_threads, "GRID_CHUNK_POINTS", 37)
    wcs = tan_wcs(150.0, 30.0, (29, 41), rot_deg=7.0)
    if distorted:
        wcs = _sip(wcs)
    ys, xs = np.meshgrid(np.arange(29, dtype=float), np.arange(41, dtype=float), indexing="ij")
    want = wcs.pixel_to_world_values(xs.ravel(), ys.ravel())
    got = pixel_grid_to_world(wcs, (29, 41), threads=threads)
    for g, w in zip(got, want):
        assert g.shape == (29, 41)
        assert g.tobytes() == np.asarray(w).reshape(29, 41).tobytes()


def test_pixel_grid_holds_only_its_outputs():
    # The outputs (2 × 8 bytes a pixel) and a chunk's temporaries, not astropy's copies of
    # the whole grid (the tile's sky coordinates were a 1w grid run's peak: issue 14).
    import tracemalloc

    wcs = tan_wcs(150.0, 30.0, (1024, 1024))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        lon, lat = pixel_grid_to_world(wcs, (1024, 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outputs = lon.nbytes + lat.nbytes  # 16.8 MB; one call on the whole grid peaked at ~50 MB
    assert peak < outputs + 16 * point_threads.GRID_CHUNK_POINTS * 8, (peak, outputs)


@pytest.mark.parametrize("distorted", [False, True])
def test_transforms_are_bit_identical_over_threads(small_parts, distorted):
    wcs = tan_wcs(150.0, 30.0, (300, 400), rot_deg=7.0)
    if distorted:
        wcs = _sip(wcs)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-20, 420, 1237), rng.uniform(-20, 320, 1237)
    lon, lat = (np.asarray(v) for v in wcs.pixel_to_world_values(x, y))
    bx, by = (np.asarray(v) for v in wcs.world_to_pixel_values(lon, lat))
    for threads in (1, 2, 5):
        got_lon, got_lat = pixel_to_world(wcs, x, y, threads=threads)
        np.testing.assert_array_equal(got_lon, lon)
        np.testing.assert_array_equal(got_lat, lat)
        got_x, got_y = world_to_pixel(wcs, lon, lat, threads=threads)
        np.testing.assert_array_equal(got_x, bx)
        np.testing.assert_array_equal(got_y, by)


def test_transforms_use_the_threads(small_parts, monkeypatch):
    # An undistorted WCS is split both ways; a distorted one's inverse is never split
    # (astropy iterates until the whole call converges: a point depends on the others).
    seen: dict[str, list[str]] = {"pixel_to_world_values": [], "world_to_pixel_values": []}
    wcs_cls = type(tan_wcs(150.0, 30.0, (10, 10)))
    for name in seen:
        original = getattr(wcs_cls, name)

        def spy(self, *args, _original=original, _name=name):
            seen[_name].append(threading.current_thread().name)
            return _original(self, *args)

        monkeypatch.setattr(wcs_cls, name, spy)
    x = np.linspace(0.0, 99.0, 400)
    for distorted, expected_inverse in ((False, 4), (True, 1)):
        for names in seen.values():
            names.clear()
        wcs = tan_wcs(150.0, 30.0, (100, 100))
        wcs = _sip(wcs) if distorted else wcs
        lon, lat = pixel_to_world(wcs, x, x, threads=4)
        world_to_pixel(wcs, lon, lat, threads=4)
        assert len(seen["pixel_to_world_values"]) == 4  # one call per part, not all in this thread
        assert len(set(seen["pixel_to_world_values"])) > 1
        assert len(seen["world_to_pixel_values"]) == expected_inverse


@pytest.fixture(params=["numba", "scipy"])
def sampler(request, monkeypatch):
    """Both samplers of ``sample_planes``: the numba kernel (skipped without numba) and SciPy's."""
    if request.param == "numba":
        pytest.importorskip("numba")
        monkeypatch.setenv("ZEMOSAIC_XP_NUMBA", "1")
    else:
        monkeypatch.setenv("ZEMOSAIC_XP_NUMBA", "0")
    return request.param


def test_sampling_is_bit_identical_over_threads(small_parts, sampler):
    rng = np.random.default_rng(5)
    planes = [rng.standard_normal((40, 50)).astype(np.float32) for _ in range(3)]
    planes[1][10:14, 20:25] = np.nan
    coords = np.vstack([rng.uniform(-2, 42, 777), rng.uniform(-2, 52, 777)])
    cvals = [np.nan, np.nan, 0.0]
    expected = [map_coordinates(p, coords, order=1, mode="constant", cval=c) for p, c in zip(planes, cvals)]
    for threads in (1, 2, 7):
        outputs = [np.full(777, -1.0, dtype=np.float32) for _ in planes]
        sample_planes(planes, coords[0], coords[1], outputs, cvals, threads=threads)
        for got, want in zip(outputs, expected):
            np.testing.assert_array_equal(got, want)
    assert np.isnan(expected[1]).any() and (expected[2] == 0).any()


def test_an_error_in_a_thread_reaches_the_caller(small_parts, sampler):
    planes = [np.zeros((4, 4), dtype=np.float32)]
    coords = np.zeros((2, 200))
    with pytest.raises((RuntimeError, ValueError)):
        # outputs too short for the later parts: refused in the worker threads
        sample_planes(planes, coords[0], coords[1], [np.zeros(60, dtype=np.float32)], [0.0], threads=4)


def test_point_threads_share_the_cores(monkeypatch):
    monkeypatch.setattr(worker_count, "_cpu_count", lambda: 16)
    assert worker_count.point_threads(1) == 8  # capped
    assert worker_count.point_threads(4) == 4
    assert worker_count.point_threads(16) == 1
    assert worker_count.point_threads(40) == 1
    assert worker_count.point_threads(1, external=True) == 1
    monkeypatch.setattr(worker_count, "_cpu_count", lambda: 2)
    assert worker_count.point_threads(1) == 2
    assert worker_count.point_threads(2) == 1
