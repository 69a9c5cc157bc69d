"""FITS reading (layouts, scaling, byte order, bands, ALPHA) and atomic writing."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.io import FitsFrameSource, FitsReadError, read_frame, write_fits


def _write(path, data, **header):
    hdu = fits.PrimaryHDU(data=data)
    for k, v in header.items():
        hdu.header[k] = v
    hdu.writeto(path, overwrite=True)
    return path


def test_mono_big_endian_float(tmp_path):
    data = np.arange(12, dtype=">f4").reshape(3, 4)
    frame = read_frame(_write(tmp_path / "m.fits", data))
    assert frame.data.shape == (3, 4, 1) and frame.data.dtype == np.float32 and frame.data.dtype.isnative
    np.testing.assert_array_equal(frame.data[..., 0], data)
    assert frame.alpha is None


def test_uint16_with_bzero(tmp_path):
    raw = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    fits.PrimaryHDU(data=raw).writeto(tmp_path / "u.fits")  # astropy stores int16 + BZERO 32768
    assert fits.getheader(tmp_path / "u.fits")["BZERO"] == 32768
    frame = read_frame(tmp_path / "u.fits")
    np.testing.assert_array_equal(frame.data[..., 0], raw.astype(np.float32))


def test_bscale_applied(tmp_path):
    raw = np.array([[1, 2], [3, 4]], dtype=np.int16)
    hdu = fits.PrimaryHDU(data=raw)
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 10.0
    hdu.writeto(tmp_path / "s.fits")
    with fits.open(tmp_path / "s.fits", do_not_scale_image_data=True) as hdul:
        stored = hdul[0].data.copy()
    frame = read_frame(tmp_path / "s.fits")
    np.testing.assert_allclose(frame.data[..., 0], stored * 0.5 + 10.0)


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_colour_layouts_become_hwc(tmp_path, layout):
    hwc = np.random.default_rng(0).normal(size=(8, 9, 3)).astype(np.float32)
    data = np.moveaxis(hwc, -1, 0) if layout == "CHW" else hwc
    frame = read_frame(_write(tmp_path / "c.fits", data))
    np.testing.assert_array_equal(frame.data, hwc)


def test_row_bands_equal_whole_frame(tmp_path):
    hwc = np.random.default_rng(1).normal(size=(17, 6, 3)).astype(">f8")
    path = _write(tmp_path / "b.fits", np.moveaxis(hwc, -1, 0))
    src = FitsFrameSource(path)
    assert src.shape == (17, 6, 3)
    bands = [src.read_rows(r, min(17, r + 5)) for r in range(0, 17, 5)]
    np.testing.assert_allclose(np.concatenate(bands), hwc.astype(np.float32))
    with pytest.raises(ValueError, match="outside"):
        src.read_rows(10, 30)


def test_nonfinite_becomes_nan(tmp_path):
    data = np.array([[1.0, np.inf], [-np.inf, np.nan]], dtype=np.float32)
    frame = read_frame(_write(tmp_path / "n.fits", data))
    assert np.isnan(frame.data[..., 0]).sum() == 3


def test_alpha_extension_is_read_as_weights(tmp_path):
    img = np.ones((4, 5, 3), np.float32)
    alpha = np.zeros((4, 5), np.uint8)
    alpha[1:, :] = 255
    alpha[0, 0] = 51
    path = write_fits(tmp_path / "a.fits", img, alpha=alpha)
    frame = read_frame(path)
    assert frame.alpha[0, 0] == pytest.approx(0.2)
    assert np.all(frame.alpha[1:] == 1.0)
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == (3, 4, 5)  # channels first on disk
        assert hdul["ALPHA"].data.dtype == np.uint8


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.fits"):
        read_frame(tmp_path / "missing.fits")
    bad = tmp_path / "corrupt.fits"
    bad.write_bytes(b"this is not a FITS file" * 200)
    with pytest.raises(FitsReadError, match="corrupt.fits"):
        read_frame(bad)
    table = tmp_path / "table.fits"
    columns = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])
    fits.HDUList([fits.PrimaryHDU(), columns]).writeto(table)
    with pytest.raises(FitsReadError, match="table.fits.*no 2-D or 3-D image"):
        read_frame(table)
    good = _write(tmp_path / "trunc.fits", np.zeros((64, 64), np.float32))
    with open(good, "r+b") as fh:
        fh.truncate(os.path.getsize(good) - 8000)
    with pytest.raises(FitsReadError, match="trunc.fits"):
        read_frame(good)


@pytest.mark.parametrize("writer", ["astropy", "minimal"])
def test_write_is_atomic_and_respects_overwrite(tmp_path, monkeypatch, writer):
    import zemosaic_xp.io.fits_write as fits_write

    path = tmp_path / "out" / "master.fits"
    write_fits(path, np.zeros((3, 3), np.float32), header=fits.Header({"NCOMBINE": 5}))
    assert fits.getheader(path)["NCOMBINE"] == 5
    with pytest.raises(FileExistsError):
        write_fits(path, np.zeros((3, 3), np.float32), overwrite=False)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if writer == "astropy":  # an astropy header: astropy renders it, its pixels go out in chunks
        monkeypatch.setattr(fits.HDUList, "writeto", boom)
        monkeypatch.setattr(fits_write, "write_image_hdus", boom)
        header = fits.Header()
    else:  # no header: the minimal writer of io/fits_cards.py
        monkeypatch.setattr(fits_write, "write_image_hdus", boom)
        header = None
    with pytest.raises(OSError, match="disk full"):
        write_fits(path, np.ones((3, 3), np.float32), header=header)
    # The old file is intact and no temporary file is left behind.
    assert np.all(fits.getdata(path) == 0)
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.fits"]


def test_written_file_has_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_fits(tmp_path / "perm.fits", np.zeros((2, 2), np.float32))
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_astropy_headers_with_chunked_pixels_are_the_bytes_writeto_gives(tmp_path):
    # Headers astropy must render (HISTORY, a long string, WCS), pixels written in row
    # chunks: the file astropy's writeto makes, byte for byte; an HDU whose pixels FITS
    # stores offset (uint16: BZERO) still goes through writeto and reads back the same.
    import zemosaic_xp.io.fits_write as fits_write

    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (40, 30, 3)).astype(np.float32)
    header = fits.Header({"CTYPE1": "RA---TAN", "CRVAL1": 10.25, "OBJECT": "M31 " * 30})
    header["HISTORY"] = "stacked " * 20
    extras = [fits.ImageHDU(rng.normal(0, 1, (3, 40, 30)), name="F64"),
              fits.ImageHDU(rng.integers(0, 9, (40, 30)).astype(np.int16), name="I16")]
    chunked = write_fits(tmp_path / "a.fits", image, header=header, alpha=np.ones((40, 30)), extra_hdus=extras)
    plain = fits_write._plain_image
    try:
        fits_write._plain_image = lambda hdu: False  # every HDU through writeto
        whole = write_fits(tmp_path / "b.fits", image, header=header, alpha=np.ones((40, 30)), extra_hdus=extras)
    finally:
        fits_write._plain_image = plain
    assert chunked.read_bytes() == whole.read_bytes()
    offset = rng.integers(0, 60000, (40, 30)).astype(np.uint16)
    path = write_fits(tmp_path / "c.fits", image, header=header, extra_hdus=[fits.ImageHDU(offset, name="U16")])
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul["U16"].data, offset)
        np.testing.assert_array_equal(hdul[0].data, np.moveaxis(image, -1, 0))
