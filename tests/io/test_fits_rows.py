"""``FitsRows``: a FITS image read by rows, the same values as reading it whole."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.io.fits_rows import FitsRows


def _write(path, data, name=None, **cards):
    hdus = [fits.PrimaryHDU()] if name else []
    hdu = fits.ImageHDU(data, name=name) if name else fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    fits.HDUList(hdus + [hdu]).writeto(path)
    return path


def test_rows_of_a_2d_image_are_its_rows(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (37, 23)).astype(np.float32)
    data[3, 4] = np.nan
    data[5, 6] = -0.0
    path = _write(tmp_path / "a.fits", data)
    rows = FitsRows(path, 0)
    assert rows.shape == (37, 23, 1) and rows.ndim == 3 and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[5:11], data[5:11, :, None])
    assert np.signbit(rows[5:6][0, 6, 0])  # the bits, not only the value
    np.testing.assert_array_equal(rows[30:], data[30:, :, None])
    np.testing.assert_array_equal(rows[2:9, 3:7, 0], data[2:9, 3:7])
    np.testing.assert_array_equal(np.asarray(rows), data[..., None])
    assert rows[10:10].shape == (0, 23, 1)
    flat = FitsRows(path, 0, channels_last=False)
    assert flat.shape == (37, 23)
    np.testing.assert_array_equal(flat[4:8, 1:3], data[4:8, 1:3])
    np.testing.assert_array_equal(flat[::2], data[::2])  # any other key: read whole, then indexed


def test_a_cube_is_read_channels_last_and_float64_rounds_to_float32(tmp_path):
    rng = np.random.default_rng(1)
    cube = rng.normal(0, 1, (3, 20, 16))
    path = _write(tmp_path / "c.fits", cube, name="WEIGHT")
    rows = FitsRows(path, "WEIGHT")
    want = np.moveaxis(cube, 0, -1).astype(np.float32)
    assert rows.shape == (20, 16, 3)
    np.testing.assert_array_equal(rows[7:13], want[7:13])
    np.testing.assert_array_equal(rows[3:5, :, 2], want[3:5, :, 2])
    assert rows[0:4].dtype == np.float32 and rows[0:4].flags.c_contiguous


def test_threads_read_at_once(tmp_path):
    data = np.arange(200 * 64, dtype=np.float32).reshape(200, 64)
    rows = FitsRows(_write(tmp_path / "t.fits", data), 0, channels_last=False)
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda r: rows[r:r + 10], range(0, 200, 10)))
    np.testing.assert_array_equal(np.concatenate(parts), data)


@pytest.mark.parametrize("data, cards", [
    (np.zeros((4, 5), np.int16), {}),                      # integer BITPIX
    (np.zeros((4, 5), np.float32), {"BSCALE": 2.0}),       # scaled
    (np.zeros((2, 2, 4, 5), np.float32), {}),              # 4-D
])
def test_what_cannot_be_read_by_rows_is_refused_naming_the_file(tmp_path, data, cards):
    path = _write(tmp_path / "bad.fits", data, **cards)
    with pytest.raises(ValueError, match="bad.fits"):
        FitsRows(path, 0)


def test_a_cube_as_a_2d_plane_is_refused(tmp_path):
    path = _write(tmp_path / "cube.fits", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="2-D image was expected"):
        FitsRows(path, 0, channels_last=False)


def test_a_truncated_file_fails_naming_it(tmp_path):
    data = np.ones((100, 100), np.float32)
    path = _write(tmp_path / "cut.fits", data)
    rows = FitsRows(path, 0)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    np.testing.assert_array_equal(rows[0:10], 1.0)  # the rows still there read as before
    with pytest.raises(OSError, match="cut.fits.*truncated"):
        rows[90:100]
