"""Global WCS, canvas and tile grid: sizes, ids, clipping, frame assignment, fallback, SIP, rotation."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.grid import geometry
from zemosaic_xp.grid.geometry import build_global_grid
from zemosaic_xp.grid.plan import load_stack_plan

from .frames_util import SCALE_DEG, tan_wcs, write_frames


def _grid(folder, **kw):
    return build_global_grid(load_stack_plan(folder).entries, **kw)


def _outline_box(frame_path, canvas_wcs):
    with fits.open(frame_path) as hdul:
        w = geometry.frame_wcs(hdul[0].header, str(frame_path))
        h, wd = hdul[0].data.shape[-2:]
    xs = np.array([-0.5, wd - 0.5, wd - 0.5, -0.5])
    ys = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
    ox, oy = canvas_wcs.world_to_pixel_values(*w.pixel_to_world_values(xs, ys))
    return ox.min(), ox.max(), oy.min(), oy.max()


def test_tiles_are_row_major_from_one_clipped_and_cover_the_canvas(tmp_path):
    write_frames(tmp_path, n=6, shape=(48, 64), rows=2)
    grid = _grid(tmp_path, grid_size_factor=0.75, overlap_fraction=0.25)
    assert grid.tile_size_px == max(32, round(0.75 * 64))
    assert grid.step_px == round(grid.tile_size_px * 0.75)
    height, width = grid.shape
    ids = [t.tile_id for t in grid.tiles]
    assert ids == sorted(ids) and ids[0] >= 1
    covered = np.zeros(grid.shape, dtype=bool)
    for t in grid.tiles:
        assert 0 <= t.y0 < t.y1 <= height and 0 <= t.x0 < t.x1 <= width
        assert t.y1 - t.y0 <= grid.tile_size_px and t.x1 - t.x0 <= grid.tile_size_px
        covered[t.y0:t.y1, t.x0:t.x1] = True
    # row-major: ids increase along x within a row of tiles, rows follow each other
    starts = sorted({(t.y0, t.x0) for t in grid.tiles})
    assert [t.tile_id for t in sorted(grid.tiles, key=lambda t: (t.y0, t.x0))] == ids
    assert len(starts) == len(ids)
    assert covered.mean() > 0.95  # every tile position that a frame touches is a tile
    assert any(t.x1 == width and t.x1 - t.x0 < grid.tile_size_px for t in grid.tiles)  # clipped edge


def test_frames_join_only_tiles_their_footprint_touches(tmp_path):
    paths = write_frames(tmp_path, n=6, shape=(48, 64), rows=2, step_deg=60 * SCALE_DEG)
    grid = _grid(tmp_path, grid_size_factor=0.6, overlap_fraction=0.1)
    by_path = {str(p.resolve()): p for p in paths}
    assert len(grid.tiles) >= 6
    for t in grid.tiles:
        for f in grid.frames:
            xmin, xmax, ymin, ymax = _outline_box(by_path[f.path], grid.wcs)
            overlaps = xmax > t.x0 - 0.5 and xmin < t.x1 - 0.5 and ymax > t.y0 - 0.5 and ymin < t.y1 - 0.5
            near = xmax > t.x0 - 4 and xmin < t.x1 + 3 and ymax > t.y0 - 4 and ymin < t.y1 + 3
            if overlaps:
                assert f.index in t.frames, (t.tile_id, f.index)
            if f.index in t.frames:
                assert near, (t.tile_id, f.index)
                box = t.patch_boxes[t.frames.index(f.index)]
                assert 0 <= box[0] < box[1] <= t.y1 - t.y0 and 0 <= box[2] < box[3] <= t.x1 - t.x0
    # frames really are spread out: no tile holds them all
    assert max(len(t.frames) for t in grid.tiles) < len(grid.frames)


def test_canvas_contains_every_frame_and_is_distortion_free(tmp_path):
    paths = write_frames(tmp_path, n=4, shape=(40, 40), rows=2)
    grid = _grid(tmp_path, grid_size_factor=1.0, overlap_fraction=0.2)
    assert grid.wcs.sip is None and not grid.fallback
    for p in paths:
        xmin, xmax, ymin, ymax = _outline_box(p, grid.wcs)
        assert xmin >= -1.0 and ymin >= -1.0 and xmax <= grid.shape[1] and ymax <= grid.shape[0]
    assert grid.pixel_scale_deg == pytest.approx(SCALE_DEG, rel=1e-6)


def test_auto_rotation_follows_rotated_frames(tmp_path):
    # One frame rotated by 30 degrees: an unrotated canvas would be ~1.7x larger.
    w = tan_wcs(150.0, 30.0, (60, 100), rot_deg=30.0)
    fits.PrimaryHDU(np.ones((60, 100), np.float32), header=w.to_header()).writeto(tmp_path / "f.fits")
    (tmp_path / "stack_plan.csv").write_text("file_path\nf.fits\n")
    grid = _grid(tmp_path, grid_size_factor=1.0, overlap_fraction=0.2)
    assert grid.shape[0] * grid.shape[1] < 1.1 * 62 * 102


def test_degenerate_optimal_wcs_falls_back(tmp_path, monkeypatch, caplog):
    paths = write_frames(tmp_path, n=4, shape=(40, 40), rows=2)
    tiny = tan_wcs(150.0, 30.0, (4, 4), scale_deg=SCALE_DEG * 50)
    monkeypatch.setattr(geometry, "_optimal_wcs", lambda frames, scale: tiny)
    monkeypatch.setattr(geometry, "_canvas", _shrunk_canvas(geometry._canvas))
    grid = _grid(tmp_path, grid_size_factor=1.0, overlap_fraction=0.2)
    assert grid.fallback and "fallback WCS" in caplog.text
    for p in paths:  # the fallback canvas still holds every frame
        xmin, xmax, ymin, ymax = _outline_box(p, grid.wcs)
        assert xmin >= -1.0 and ymin >= -1.0 and xmax <= grid.shape[1] and ymax <= grid.shape[0]
    monkeypatch.setattr(geometry, "_optimal_wcs", _raise)
    assert _grid(tmp_path, grid_size_factor=1.0, overlap_fraction=0.2).fallback


def _shrunk_canvas(real):
    calls = []

    def canvas(wcs, outlines):
        calls.append(1)
        out, shape = real(wcs, outlines)
        return (out, (3, 3)) if len(calls) == 1 else (out, shape)  # first (optimal) call: degenerate
    return canvas


def _raise(*_):
    raise RuntimeError("optimiser failed")


def test_sip_distortion_is_honoured_in_footprints(tmp_path):
    shape = (50, 50)
    plain = tan_wcs(150.0, 30.0, shape)
    header = plain.to_header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 0.0, "A_0_2": 2e-3, "A_1_1": 0.0,
                   "B_2_0": 2e-3, "B_0_2": 0.0, "B_1_1": 0.0})
    fits.PrimaryHDU(np.ones(shape, np.float32), header=header).writeto(tmp_path / "sip.fits")
    (tmp_path / "stack_plan.csv").write_text("file_path\nsip.fits\n")
    grid = _grid(tmp_path, grid_size_factor=1.0, overlap_fraction=0.2)
    assert grid.wcs.sip is None
    # x gains 2e-3·v² and y 2e-3·u²: the corners move out by ~1.3 px, the edge middles do not
    xmin, xmax, ymin, ymax = grid.frames[0].footprint
    assert (xmax - xmin) > 50.5 and (ymax - ymin) > 50.5


def test_too_many_tiles_and_mixed_channels_are_refused(tmp_path):
    with pytest.raises(ValueError, match="grid_size_factor"):
        geometry._make_tiles((100_000, 100_000), 32, 1, [])
    write_frames(tmp_path / "b", n=2, shape=(40, 40), rows=1, channels=3)
    mixed = tmp_path / "b" / "frame_002.fits"
    fits.PrimaryHDU(np.ones((40, 40), np.float32),
                    header=tan_wcs(150.0, 30.0, (40, 40)).to_header()).writeto(mixed)
    (tmp_path / "b" / "stack_plan.csv").write_text("file_path\nframe_000.fits\nframe_002.fits\n")
    with pytest.raises(ValueError, match="channel"):
        _grid(tmp_path / "b", grid_size_factor=1.0, overlap_fraction=0.2)


def test_frames_without_celestial_wcs_are_skipped(tmp_path, caplog):
    write_frames(tmp_path, n=2, shape=(40, 40), rows=1)
    fits.PrimaryHDU(np.ones((40, 40), np.float32)).writeto(tmp_path / "nowcs.fits")
    (tmp_path / "stack_plan.csv").write_text("file_path\nframe_000.fits\nnowcs.fits\nframe_001.fits\n")
    grid = _grid(tmp_path, grid_size_factor=1.0, overlap_fraction=0.2)
    assert len(grid.frames) == 2 and "nowcs.fits" in caplog.text


def _rectangle(width, height, angle, n_side=9):
    """Points along the outline of a ``width`` × ``height`` rectangle turned by ``angle`` (radians)."""
    t = np.linspace(0.0, 1.0, n_side)
    x = np.concatenate([t * width, np.full(n_side, width), (1 - t) * width, np.zeros(n_side)])
    y = np.concatenate([np.zeros(n_side), t * height, np.full(n_side, height), (1 - t) * height])
    c, s = np.cos(angle), np.sin(angle)
    return np.column_stack([c * x - s * y + 10.0, s * x + c * y - 3.0])


@pytest.mark.parametrize("angle", [0.3, 0.3 + np.pi / 2, 1.2, -0.2])
def test_min_area_angle_is_the_rectangles_rotation(angle):
    # shapely's minimum rotated rectangle of a turned rectangle is that rectangle: its
    # rotation comes back exactly as the direction of a side, in [0, π/2).
    got = geometry._min_area_angle(_rectangle(100.0, 40.0, angle))
    assert got == pytest.approx(angle % (np.pi / 2), abs=1e-12) and 0.0 <= got < np.pi / 2


def test_unrotated_and_degenerate_outlines_are_not_rotated():
    assert geometry._min_area_angle(_rectangle(100.0, 40.0, 0.0)) == 0.0
    assert geometry._min_area_angle(_rectangle(100.0, 40.0, np.pi / 2)) == 0.0  # the same box
    line = np.column_stack([np.arange(5.0), 2.0 * np.arange(5.0)])
    assert geometry._min_area_angle(line) == 0.0  # collinear: shapely gives a line, no rectangle


@pytest.mark.parametrize("case", ["icrs", "sip", "fk5", "ra-wrap"])
def test_survey_tan_is_reprojects_optimal_wcs_to_the_last_bit(case):
    """``_survey_tan`` replaces ``find_optimal_celestial_wcs`` (no reproject import in set-up)."""
    import warnings

    from astropy import units as u
    from reproject.mosaicking import find_optimal_celestial_wcs

    rng = np.random.default_rng(3)
    ra0 = 0.01 if case == "ra-wrap" else 150.0
    frames = []
    for k in range(7):
        shape = (40 + 3 * k, 64 - 2 * k)
        w = tan_wcs(ra0 + rng.uniform(-0.02, 0.02), 30.0 + rng.uniform(-0.02, 0.02), shape,
                    rot_deg=float(rng.uniform(-3, 3)))
        if case == "sip":
            header = w.to_header()
            header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
            header["A_ORDER"] = header["B_ORDER"] = 2
            header["A_2_0"], header["B_1_1"] = 2e-5, 1.5e-5
            w = geometry.WCS(header)
        if case == "fk5":
            w.wcs.radesys, w.wcs.equinox = "FK5", 2000.0
            w.wcs.set()
        frames.append((shape, w.celestial))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _ = find_optimal_celestial_wcs(frames, resolution=SCALE_DEG * u.deg, auto_rotate=False,
                                            projection="TAN")
        mine = geometry._survey_tan(frames, SCALE_DEG)
    for name in ("crval", "crpix", "cdelt", "pc"):
        assert np.array_equal(getattr(mine.wcs, name), getattr(ref.wcs, name)), name
    assert list(mine.wcs.ctype) == list(ref.wcs.ctype) and mine.wcs.radesys == ref.wcs.radesys
    assert mine.to_header_string(relax=True) == ref.to_header_string(relax=True)
