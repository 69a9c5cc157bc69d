"""16-bit frames read as stored (``io/stored_bands.py``, ``FitsFrameSource.read_stored_rows``)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.io import FitsFrameSource, FitsReadError
from zemosaic_xp.io.bands import ArraySource, FitsSource, open_sources
from zemosaic_xp.io.cosmic import masked_sources
from zemosaic_xp.io.stored_bands import read_stored_frames_first, stored_scalings

from ..classic.helpers import write_frame


def _scaled(path, values, bscale, bzero):
    """Write float ``values`` as BITPIX 16 with BSCALE/BZERO (astropy's own scaling)."""
    hdu = fits.PrimaryHDU(data=np.asarray(values, dtype=np.float64))
    hdu.scale("int16", bscale=bscale, bzero=bzero)
    hdu.writeto(path, overwrite=True)
    return str(path)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(3)
    mono = rng.integers(0, 65536, (3, 11, 13)).astype(np.uint16)
    rgb = rng.integers(0, 65536, (3, 11, 13, 3)).astype(np.uint16)
    return {
        "mono": ([str(write_frame(tmp_path / f"m{i}.fits", f, dtype="uint16")) for i, f in enumerate(mono)], mono),
        "hwc": ([str(write_frame(tmp_path / f"h{i}.fits", f, dtype="uint16", layout="HWC")) for i, f in enumerate(rgb)],
                rgb),
        "chw": ([str(write_frame(tmp_path / f"c{i}.fits", f, dtype="uint16", layout="CHW")) for i, f in enumerate(rgb)],
                rgb),
        "scaled": ([_scaled(tmp_path / f"s{i}.fits", rng.normal(500, 30, (11, 13)).round(1), 0.1, 500.0)
                    for i in range(2)], None),
        "float": ([str(write_frame(tmp_path / "f.fits", mono[0].astype(np.float32)))], None),
        "bytes": ([str(write_frame(tmp_path / "b.fits", (mono[0] >> 8).astype(np.uint8), dtype="uint8"))], None),
    }


@pytest.mark.parametrize("kind", ["mono", "hwc", "scaled"])
def test_stored_rows_decode_to_what_read_rows_converts(files, kind):
    paths, _ = files[kind]
    for path in paths:
        source = FitsFrameSource(path)
        bscale, bzero = source.stored_scaling
        q = source.width * source.channels
        raw = source.read_stored_rows(2, 9, np.empty((7, q), np.uint16))
        # The file's big-endian bytes, unswapped: decode them as io.fits would.
        decoded = raw.view(">i2").astype(np.float32)
        if bscale != 1.0:
            decoded *= np.float32(bscale)
        if bzero != 0.0:
            decoded += np.float32(bzero)
        want = source.read_rows(2, 9).reshape(7, q)
        assert decoded.tobytes() == want.tobytes()


def test_scalings_of_camera_and_scaled_files(files):
    np.testing.assert_array_equal(stored_scalings(open_sources(files["mono"][0])), [[1.0, 32768.0]] * 3)
    got = stored_scalings(open_sources(files["scaled"][0]))
    assert got.dtype == np.float32 and got.shape == (2, 2)
    np.testing.assert_array_equal(got, np.float32([[0.1, 500.0]] * 2))


@pytest.mark.parametrize("kind", ["chw", "float", "bytes"])
def test_files_that_cannot_be_read_as_stored(files, kind):
    paths, _ = files[kind]
    assert FitsFrameSource(paths[0]).stored_scaling is None
    assert stored_scalings(open_sources(paths)) is None
    with pytest.raises(ValueError, match="16-bit"):
        FitsFrameSource(paths[0]).read_stored_rows(0, 1, np.empty((1, 13), np.uint16))


def test_any_other_source_keeps_the_converting_path(files):
    paths, mono = files["mono"]
    sources = open_sources(paths)
    assert stored_scalings([*sources[:2], ArraySource(mono[2], "array")]) is None
    masked, _ = masked_sources(open_sources(paths), mode="always", min_depth=1)
    assert all(type(s) is not FitsSource for s in masked) and stored_scalings(masked) is None
    weighted = open_sources(paths)
    weighted[1].ivar = object()
    assert stored_scalings(weighted) is None


def test_frames_first_block_of_stored_rows(files):
    paths, rgb = files["hwc"]
    sources = open_sources(paths)
    band = read_stored_frames_first(sources, 3, 8)
    assert band.shape == (3, 5, 13, 3) and band.dtype == np.uint16
    np.testing.assert_array_equal(band.view(">i2").astype(np.int32) + 32768, rgb[:, 3:8])


def test_bad_rows_and_buffers_are_refused(files):
    source = FitsFrameSource(files["mono"][0][0])
    with pytest.raises(ValueError, match="outside"):
        source.read_stored_rows(5, 12, np.empty((7, 13), np.uint16))
    with pytest.raises(ValueError, match="uint16 of shape"):
        source.read_stored_rows(0, 2, np.empty((2, 13), np.float32))
    with pytest.raises(ValueError, match="uint16 of shape"):
        source.read_stored_rows(0, 2, np.empty((3, 13), np.uint16))


def test_a_file_cut_short_after_opening_is_named(files):
    path = files["mono"][0][0]
    source = FitsFrameSource(path)
    os.truncate(path, os.path.getsize(path) - 2880)
    with pytest.raises(FitsReadError, match="ended early") as err:
        source.read_stored_rows(0, 11, np.empty((11, 13), np.uint16))
    assert os.path.basename(path) in str(err.value)
