"""The patch reprojection is bit for bit ``reproject_interp(roundtrip_coords=False)``.

``reproject_patch`` reimplements reproject's bilinear path (no dask import in the
workers, no SkyCoord round trip for ICRS frames, coordinates clipped once per patch);
the reference here is the previous implementation, a single ``reproject_interp`` call.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.wcs import WCS

from zemosaic_xp.grid import point_threads, reproject_tile
from zemosaic_xp.grid.geometry import tile_wcs
from zemosaic_xp.grid.reproject_tile import TileSky, frame_planes, reproject_patch

from .frames_util import SCALE_DEG, tan_wcs


def _reference(data, alpha, frame_wcs, grid_wcs, y0, x0, box):
    """The implementation before the fast path: one ``reproject_interp`` call."""
    from reproject import reproject_interp

    py0, py1, px0, px1 = box
    h, w = py1 - py0, px1 - px0
    channels = data.shape[2]
    planes = frame_planes(data, alpha)
    out = np.empty((planes.shape[0], h, w), dtype=np.float32)
    footprint = np.empty((planes.shape[0], h, w), dtype=np.float32)
    target = tile_wcs(grid_wcs, y0 + py0, x0 + px0, (h, w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reproject_interp((planes, frame_wcs), target, shape_out=out.shape, output_array=out,
                         output_footprint=footprint, roundtrip_coords=False, parallel=False)
    weight = np.max(footprint[:channels], axis=0)
    if alpha is not None:
        a = np.where(np.isfinite(out[channels]), out[channels], 0.0)
        weight = weight * np.clip(a, 0.0, 1.0)
    weight = np.where(np.isfinite(weight) & (weight > 0), weight, 0.0).astype(np.float32)
    patch = np.moveaxis(out[:channels], 0, -1)
    patch = np.where(weight[..., None] > 0, patch, np.float32(np.nan))
    return np.ascontiguousarray(patch, dtype=np.float32), weight


def _frame(shape, channels, rng, *, nan_hole=True):
    data = (1000.0 + 50.0 * rng.standard_normal((*shape, channels))).astype(np.float32)
    if nan_hole:
        data[5:9, 10:14, 0] = np.nan
    return data


def _sip(w: WCS) -> WCS:
    header = w.to_header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header["A_ORDER"] = header["B_ORDER"] = 2
    header["A_2_0"], header["A_0_2"], header["B_1_1"] = 2e-5, -1e-5, 1.5e-5
    header["AP_ORDER"] = header["BP_ORDER"] = 2
    header["AP_2_0"], header["AP_0_2"], header["BP_1_1"] = -2e-5, 1e-5, -1.5e-5
    return WCS(header)


@pytest.mark.parametrize("case", ["icrs", "icrs-alpha", "sip", "fk5", "ra-wrap", "rgb-alpha-sip"])
def test_patch_is_bit_identical_to_reproject_interp(case, monkeypatch):
    rng = np.random.default_rng(1)
    shape = (60, 80)
    ra = 0.005 if case == "ra-wrap" else 150.0
    channels = 3 if case.startswith("rgb") else 1
    frame_wcs = tan_wcs(ra, 30.0, shape, rot_deg=3.0)
    if "sip" in case:
        frame_wcs = _sip(frame_wcs)
    grid_wcs = tan_wcs(ra - 10 * SCALE_DEG, 30.0 + 5 * SCALE_DEG, (120, 140), rot_deg=-1.0)
    if case == "fk5":
        for w in (frame_wcs, grid_wcs):
            w.wcs.radesys, w.wcs.equinox = "FK5", 2000.0
            w.wcs.set()
    data = _frame(shape, channels, rng)
    alpha = None
    if "alpha" in case:
        alpha = np.clip(rng.uniform(-0.2, 1.2, shape), 0.0, 1.0).astype(np.float32)
    y0, x0 = 7, 11
    box = (3, 90, 2, 115)
    expected = _reference(data, alpha, frame_wcs, grid_wcs, y0, x0, box)
    got = reproject_patch(data, alpha, frame_wcs, grid_wcs, y0, x0, box)
    assert np.isfinite(got[0]).any() and np.isnan(got[0]).any()
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    # planes made once and a prepared target give the same again
    again = reproject_patch(None, alpha, frame_wcs, grid_wcs, y0, x0, box, planes=frame_planes(data, alpha),
                            target=tile_wcs(grid_wcs, y0 + box[0], x0 + box[2], (box[1] - box[0], box[3] - box[2])))
    np.testing.assert_array_equal(again[0], expected[0])
    np.testing.assert_array_equal(again[1], expected[1])
    # the tile's shared sky coordinates give the same again
    sky = TileSky(grid_wcs, y0, x0, (box[1] + 4, box[3] + 3))
    shared = reproject_patch(data, alpha, frame_wcs, grid_wcs, y0, x0, box, sky=sky)
    np.testing.assert_array_equal(shared[0], expected[0])
    np.testing.assert_array_equal(shared[1], expected[1])
    assert (sky.patch(box) is not None) == (case not in ("fk5", "ra-wrap"))  # else the own transform
    # row chunks of a few pixels (the default is 262144 px) give the same again
    monkeypatch.setattr(reproject_tile, "_CHUNK_PX", 37)
    for kw in ({}, {"sky": sky}):
        chunked = reproject_patch(data, alpha, frame_wcs, grid_wcs, y0, x0, box, **kw)
        np.testing.assert_array_equal(chunked[0], expected[0])
        np.testing.assert_array_equal(chunked[1], expected[1])
    # the points split over threads (parts of 64 px here) give the same again
    monkeypatch.setattr(point_threads, "MIN_POINTS_PER_THREAD", 64)
    threaded_sky = TileSky(grid_wcs, y0, x0, (box[1] + 4, box[3] + 3), threads=3)
    for kw in ({}, {"sky": threaded_sky}):
        threaded = reproject_patch(data, alpha, frame_wcs, grid_wcs, y0, x0, box, threads=3, **kw)
        np.testing.assert_array_equal(threaded[0], expected[0])
        np.testing.assert_array_equal(threaded[1], expected[1])


def test_shared_tile_sky_is_bit_identical_for_any_patch_origin():
    """Patches anywhere on large canvases with awkward CRPIX: the shared path or the own one, same floats."""
    rng = np.random.default_rng(7)
    shared_used = 0
    for _trial in range(12):
        grid_wcs = tan_wcs(150.0, 30.0, (4000, 5000), rot_deg=float(rng.uniform(-20, 20)))
        grid_wcs.wcs.crpix = [float(rng.uniform(-3000.0, 6000.0)) + rng.uniform(0, 1) * 2.0**-30,
                              float(rng.uniform(-3000.0, 6000.0))]
        grid_wcs.wcs.set()
        y0, x0 = (int(v) for v in rng.integers(0, 3500, 2))
        sky = TileSky(grid_wcs, y0, x0, (300, 280))
        for _ in range(4):
            py0, px0 = (int(v) for v in rng.integers(0, 200, 2))
            box = (py0, py0 + int(rng.integers(1, 100)), px0, px0 + int(rng.integers(1, 80)))
            target = tile_wcs(grid_wcs, y0 + py0, x0 + px0, (box[1] - box[0], box[3] - box[2]))
            h, w = box[1] - box[0], box[3] - box[2]
            ys, xs = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
            own = target.pixel_to_world_values(xs.ravel(), ys.ravel())
            world = sky.patch(box)
            if world is not None:
                shared_used += 1
                np.testing.assert_array_equal(world[0].ravel(), own[0])
                np.testing.assert_array_equal(world[1].ravel(), own[1])
    assert shared_used >= 24  # most patches share (the check only refuses inexact CRPIX)
