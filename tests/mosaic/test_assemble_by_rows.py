"""Tiles held as ``FitsRows`` (the grid's tiles on disk): the same mosaic, without holding them."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from astropy.io import fits

import zemosaic_xp.mosaic.blend as blend
import zemosaic_xp.mosaic.preview as preview
from zemosaic_xp.grid.tile import read_tile
from zemosaic_xp.io.fits_rows import FitsRows
from zemosaic_xp.mosaic import TileImage, assemble_mosaic


def _write_tiles(folder, n_chan, size=60, step=45, grid=3, seed=0):
    """``grid × grid`` overlapping tiles as the grid writes them: CHW image, WEIGHT, COVERAGE, UNCERT."""
    rng = np.random.default_rng(seed)
    placed = []
    for k in range(grid * grid):
        y0, x0 = (k // grid) * step, (k % grid) * step
        img = (rng.normal(100, 5, (size, size, n_chan)) * (1 + 0.05 * k) + k).astype(np.float32)
        img[rng.random(img.shape) < 0.03] = np.nan
        img[: 1 + k % 4] = np.nan  # ragged valid edges
        wt = rng.uniform(0.5, 2.0, img.shape).astype(np.float32)
        cov = rng.integers(1, 9, img.shape[:2]).astype(np.float32)
        se = rng.uniform(0.5, 3.0, img.shape).astype(np.float32)

        def chw(a):
            return a[..., 0] if n_chan == 1 else np.moveaxis(a, -1, 0)

        path = folder / f"tile_{k:04d}.fits"
        fits.HDUList([fits.PrimaryHDU(np.ascontiguousarray(chw(img))),
                      fits.ImageHDU(np.ascontiguousarray(chw(wt)), name="WEIGHT"),
                      fits.ImageHDU(cov, name="COVERAGE"),
                      fits.ImageHDU(np.ascontiguousarray(chw(se)), name="UNCERT")]).writeto(path)
        placed.append((k, y0, x0, path))
    shape = ((grid - 1) * step + size, (grid - 1) * step + size)
    return placed, shape


def _tiles(placed, by_rows):
    out = []
    for k, y0, x0, path in placed:
        product, _ = read_tile(path, by_rows=by_rows)
        out.append(TileImage(k, y0, x0, product.image, product.weight, product.coverage, product.uncertainty))
    return out


@pytest.mark.parametrize("n_chan", [1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_tiles_by_rows_give_the_same_mosaic(tmp_path, monkeypatch, n_chan, threads):
    monkeypatch.setattr(blend, "STRIPE_ROWS", 16)  # stripes across the tiles' edges
    placed, shape = _write_tiles(tmp_path, n_chan)
    lazy = _tiles(placed, by_rows=True)
    assert isinstance(lazy[0].image, FitsRows) and isinstance(lazy[0].coverage, FitsRows)
    got = assemble_mosaic(lazy, shape, threads=threads)
    want = assemble_mosaic(_tiles(placed, by_rows=False), shape, threads=1)
    for name in ("image", "weight", "coverage", "uncertainty"):
        assert getattr(got, name).tobytes() == getattr(want, name).tobytes(), name
    assert got.gains == want.gains and got.offsets == want.offsets
    assert np.isfinite(got.image).mean() > 0.9


def test_tiles_by_rows_are_not_held(tmp_path):
    # The assembly reads every tile, but holds only masks and ramps of them: its peak of
    # traced allocations grows by far less than the tiles' own size against tiles given
    # in memory (whose arrays exist before the call and are not traced).
    placed, shape = _write_tiles(tmp_path, 1, size=300, step=150, grid=4)
    tile_bytes = sum(4 * 4 * 300 * 300 for _ in placed)  # image, weight, coverage, uncertainty

    def peak(tiles):
        tracemalloc.start()
        try:
            assemble_mosaic(tiles, shape, threads=1)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    eager = _tiles(placed, by_rows=False)
    in_memory = peak(eager)
    del eager
    by_rows = peak(_tiles(placed, by_rows=True))
    assert by_rows - in_memory < 0.25 * tile_bytes, (by_rows, in_memory, tile_bytes)


def test_preview_block_mean_by_strips_is_the_whole_image_block_mean(monkeypatch):
    from astropy.nddata import block_reduce

    rng = np.random.default_rng(2)
    image = rng.normal(0, 1, (103, 57, 3)).astype(np.float32)
    image[rng.random(image.shape) < 0.2] = np.nan
    image[:12] = np.nan  # all-NaN blocks
    factor = 4
    padded = np.pad(image, ((0, -103 % factor), (0, -57 % factor), (0, 0)), constant_values=np.nan)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = block_reduce(padded, (factor, factor, 1), func=np.nanmean).astype(np.float32)
    monkeypatch.setattr(preview, "_STRIP_BLOCKS", 3)  # several strips, the last one partial
    got = preview._block_mean(image, factor)
    assert got.shape == want.shape == (26, 15, 3)
    assert got.tobytes() == want.tobytes()



def test_the_memory_estimate_of_tiles_read_by_rows_bounds_the_assembly(tmp_path):
    # The canvas guard's estimate for the grid's tiles (read by rows) is an upper bound
    # of what the assembly allocates, and below the estimate for tiles held whole.
    from zemosaic_xp.mosaic.assemble import assembly_memory_bytes

    placed, shape = _write_tiles(tmp_path, 3, size=200, step=150, grid=3)
    tiles = _tiles(placed, by_rows=True)
    tracemalloc.start()
    try:
        assemble_mosaic(tiles, shape, threads=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    tile_px = 9 * 200 * 200
    by_rows = assembly_memory_bytes(shape, 3, tile_px, largest_tile_pixels=200 * 200)
    assert peak <= by_rows < assembly_memory_bytes(shape, 3, tile_px)
