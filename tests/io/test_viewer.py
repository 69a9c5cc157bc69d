"""The uint16 viewer copy of a mosaic (ZeMosaic's save_final_as_uint16)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.io.viewer import to_uint16, write_uint16_viewer


@pytest.mark.parametrize(("data", "expected"), [
    ([0.0, 0.5, 1.0, np.nan], [0, 32768, 65535, 0]),          # [0, 1]: x 65535, NaN -> 0
    ([0.0, 1000.4, 65535.0, 2.6], [0, 1000, 65535, 3]),       # [0, 65535]: kept, rounded
    ([-10.0, 0.0, 10.0, np.inf], [0, 32768, 65535, 0]),       # else: min..max stretched
    ([5.0, 5.0, 70000.0, 70000.0], [0, 0, 65535, 65535]),
    ([np.nan, np.nan, np.nan, np.nan], [0, 0, 0, 0]),
    ([-3.0, -3.0, -3.0, -3.0], [0, 0, 0, 0]),                 # constant out of range
])
def test_known_answers(data, expected):
    out = to_uint16(np.array(data, dtype=np.float32).reshape(2, 2))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out.ravel(), expected)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_file_round_trip(tmp_path, channels):
    rng = np.random.default_rng(1)
    shape = (5, 7) if channels is None else (5, 7, channels)
    image = rng.uniform(100, 5000, shape).astype(np.float32)
    image[0, 0] = np.nan
    header = fits.Header({"CTYPE1": "RA---TAN", "OBJECT": "M31", "BITPIX": -32})
    path = write_uint16_viewer(tmp_path / "mosaic_grid_viewer.fits", image, header=header, legacy_rgb_cube=True)
    with fits.open(path) as hdul:
        hdr = hdul[0].header
        data = hdul[0].data
        assert hdr["BITPIX"] == 16 and hdr["BZERO"] == 32768 and hdr["ZEMO16"] and hdr["ZEMOLEG"]
        assert hdr["OBJECT"] == "M31" and hdr["CTYPE1"] == "RA---TAN"
        assert data.dtype == np.uint16
        rgb = channels == 3
        assert hdr["ZEMORGB"] is rgb and hdr["CHANNELS"] == (3 if rgb else 1)
        expected = to_uint16(image if channels != 1 else image[..., 0])
        np.testing.assert_array_equal(np.moveaxis(data, 0, -1) if rgb else data, expected)
    assert not list(tmp_path.glob("*.tmp*"))


def test_bad_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match="image"):
        write_uint16_viewer(tmp_path / "v.fits", np.zeros((4, 4, 2), np.float32))
