"""The fast FITS header reader agrees with astropy, and hands astropy what it is not sure of."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.io.fits import FitsFrameSource
from zemosaic_xp.io.fits_header import scan_hdus


def _write(path, hdus):
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def test_primary_image_known_answer(tmp_path):
    hdu = fits.PrimaryHDU(np.arange(12, dtype=np.uint16).reshape(3, 4))
    hdu.header["EXPTIME"] = (30.5, "s")
    hdu.header["OBJECT"] = ("M31 'core'", "quote inside")
    hdu.header["BAYER"] = False
    hdu.header["HISTORY"] = "calibrated = yes"
    path = _write(tmp_path / "a.fits", [hdu])
    (info,) = scan_hdus(path)
    assert info.cards["BITPIX"] == 16 and info.cards["BZERO"] == 32768 and info.shape == (3, 4)
    assert info.cards["EXPTIME"] == 30.5 and info.cards["OBJECT"] == "M31 'core'" and info.cards["BAYER"] is False
    assert info.name == "PRIMARY" and info.is_image and info.data_bytes == 24
    with fits.open(path) as hdul:
        assert info.data_offset == hdul.fileinfo(0)["datLoc"]


def test_extensions_and_offsets_match_astropy(tmp_path):
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.ones((5, 7, 3), np.float32), name="SCI"),
            fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.arange(4.0))], name="TAB"),
            fits.ImageHDU(np.zeros((2, 2), np.int32), name="EXTRA")]
    path = _write(tmp_path / "b.fits", hdus)
    scanned = scan_hdus(path)
    with fits.open(path) as hdul:
        assert [h.name for h in scanned] == [h.name for h in hdul]
        assert [h.data_offset for h in scanned] == [hdul.fileinfo(i)["datLoc"] for i in range(len(hdul))]
    assert [h.is_image for h in scanned] == [True, True, False, True]


@pytest.mark.parametrize("content", [b"not a fits file" * 300, b"SIMPLE  =                    T" + b" " * 50])
def test_unsure_files_are_left_to_astropy(tmp_path, content):
    path = tmp_path / "bad.fits"
    path.write_bytes(content)
    assert scan_hdus(path) is None


def test_frame_source_reads_the_same_with_either_reader(tmp_path, monkeypatch):
    data = np.random.default_rng(1).integers(0, 65535, (3, 9, 8)).astype(np.uint16)
    path = _write(tmp_path / "c.fits", [fits.PrimaryHDU(data)])
    fast = FitsFrameSource(path)
    from zemosaic_xp.io import fits as fits_module

    monkeypatch.setattr(fits_module, "scan_hdus", lambda p: None)
    slow = FitsFrameSource(path)
    assert fast._raw_header is not None and slow._raw_header is None  # noqa: SLF001 - which reader ran
    assert (fast.layout, fast.shape) == (slow.layout, slow.shape) == ("CHW", (9, 8, 3))
    np.testing.assert_array_equal(fast.read_rows(2, 7), slow.read_rows(2, 7))
    assert fast.header["BZERO"] == slow.header["BZERO"] == 32768
    assert fast.card("NAXIS1") == slow.card("NAXIS1") == 8


def test_files_kept_open_read_the_same_and_are_closed(tmp_path):
    from zemosaic_xp.io.bands import open_sources, read_frames_first
    from zemosaic_xp.io.open_files import files_kept_open

    rng = np.random.default_rng(2)
    paths = [str(_write(tmp_path / f"k{i}.fits", [fits.PrimaryHDU(rng.integers(0, 900, (6, 5)).astype(np.int16))]))
             for i in range(4)]
    sources = open_sources(paths)
    expected = read_frames_first(sources, 1, 5)
    with files_kept_open(sources) as held:
        assert held and all(s._fits._fd is not None for s in sources)  # noqa: SLF001
        np.testing.assert_array_equal(read_frames_first(sources, 1, 5), expected)
    assert all(s._fits._fd is None for s in sources)  # noqa: SLF001


def test_scanned_path_is_its_path_and_spares_a_second_scan(tmp_path, monkeypatch):
    import os

    from zemosaic_xp.io import fits as fits_module
    from zemosaic_xp.io.fits_header import ScannedPath
    from zemosaic_xp.nddata import master_tile_inputs

    name = str(tmp_path / "a.fits")
    fits.PrimaryHDU(np.arange(12, dtype=np.int16).reshape(3, 4), fits.Header({"BUNIT": "adu"})).writeto(name)
    (scanned,), unit, _ = master_tile_inputs([name])
    assert isinstance(scanned, ScannedPath) and unit == "adu"
    assert scanned == name and os.fspath(scanned) == name and str(scanned) == name and repr(scanned) == repr(name)
    assert hash(scanned) == hash(name) and scanned != 3

    def no_second_scan(path):
        raise AssertionError("scanned twice")

    monkeypatch.setattr(fits_module, "scan_hdus", no_second_scan)
    src = FitsFrameSource(scanned)
    np.testing.assert_array_equal(np.squeeze(src.read_rows(0, 3)), np.arange(12).reshape(3, 4))
